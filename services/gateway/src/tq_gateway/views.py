"""What the API shows of a task: its own model, apart from how the task is stored.

``TaskView`` is the task resource of the contract (section 3) plus what users need to follow a task
(``cancel_requested``, ``paused_at``, ``lease_expires_at``, ``parent_id``); the stored document also carries the
bookkeeping of the scheduler, the reaper and the executor (claim seq, resends, poison strikes, slots, trace
context), which clients must not come to depend on. The OpenAPI ``Task`` schema is generated from these models,
and a unit test keeps :func:`task_view`'s output and a listed document's view equal to them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from tqcore.documents import FIELDS
from tqcore.domain.codec import task_to_dict
from tqcore.domain.model import Overlap, Priority, Status
from tqcore.domain.task import Task

#: ``null`` allowed in Python, left out of the schema: the view omits a schedule's unset keys.
Absent = SkipJsonSchema[None]


class Retry(BaseModel):
    """How a run is retried: at most ``1 + max_retries`` attempts, backoff doubling from ``backoff_base_s``."""

    max_retries: int = Field(ge=0, le=20)
    backoff_base_s: float = Field(gt=0)
    backoff_max_s: float = Field(gt=0)


def _one_kind(schema: dict[str, Any]) -> None:
    """A schedule shows only its set keys (no ``null``, no default) and is exactly one kind."""
    for prop in schema["properties"].values():
        prop.pop("default", None)
    schema["oneOf"] = [
        {
            "required": ["at"],
            "not": {"anyOf": [{"required": [k]} for k in ("every_s", "cron", "timezone", "start_at", "end_at")]},
        },
        {"required": ["every_s"], "not": {"anyOf": [{"required": [k]} for k in ("at", "cron", "timezone")]}},
        {"required": ["cron", "timezone"], "not": {"anyOf": [{"required": [k]} for k in ("at", "every_s")]}},
    ]


class Schedule(BaseModel):
    """One of `{at}`, `{every_s, start_at?, end_at?}`, `{cron, timezone, start_at?, end_at?}`."""

    model_config = ConfigDict(json_schema_extra=_one_kind)

    at: datetime | Absent = None
    every_s: Annotated[float, Field(ge=1)] | Absent = None
    cron: str | Absent = None
    timezone: str | Absent = None
    start_at: datetime | Absent = None
    end_at: datetime | Absent = None


class LastError(BaseModel):
    """The last failed attempt's error."""

    type: str
    message: str


class ProgressView(BaseModel):
    """The running (or last) attempt's newest progress report (``ctx.progress``), as the executor received it."""

    model_config = ConfigDict(title="Progress")

    fraction: float | None = Field(ge=0, le=1, description="how far, 0 to 1; null if the handler gave none")
    message: str | None = Field(max_length=500)
    at: datetime = Field(description="when the executor received the report")


class TaskView(BaseModel):
    """A task as the API shows it (contract section 3); every field is always present."""

    model_config = ConfigDict(title="Task")

    id: str
    type: str
    group: str
    owner: str
    name: str | None
    description: str | None
    payload: Any = Field(description="any JSON value, as submitted")
    priority: Priority
    pool: str = Field(description="the executor pool whose queues it is sent to: its type's pool when submitted")
    status: Status
    version: int = Field(ge=1, description="increases with every change; the ETag")
    attempts: int = Field(ge=0, description="attempts started for the current run")
    retries: int = Field(ge=0, description="max(attempts - 1, 0)")
    retry: Retry
    timeout_s: int = Field(ge=1, le=43200)
    schedule: Schedule | None
    overlap: Overlap
    expires_at: datetime | None
    idempotency_key: str | None
    worker: str | None = Field(description='"<hostname>:<pid>" of the executor holding the lease')
    created_at: datetime
    updated_at: datetime | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    next_run_at: datetime | None
    lease_expires_at: datetime | None = Field(description="while running: when the attempt's lease runs out")
    run_count: int = Field(ge=0, description="runs finished (repeating tasks)")
    cancel_requested: bool = Field(description="a running attempt was told to stop")
    paused_at: datetime | None = Field(
        description="when a user paused this repeating task (null unless paused); an attempt running when it"
        " was paused keeps the task `running` until it ends (no retry follows), then the task is `paused`"
    )
    parent_id: str | None = Field(description="`overlap: allow`: the repeating task that spawned this run")
    last_error: LastError | None
    result: Any = Field(description="the handler's return value (any JSON value), null until it succeeds")
    progress: ProgressView | None = Field(
        description="the newest progress report of the running attempt (kept once it ends; a new attempt's claim"
        " clears it); written about once a second at most, with no event and no new version"
    )


#: The view's fields, in the order a response lists them.
TASK_FIELDS = tuple(TaskView.model_fields)


def task_view(task: Task) -> dict[str, Any]:
    """The task as the API shows it: ``TaskView``'s fields of its JSON form (``task_to_dict``), JSON-ready."""
    resource = task_to_dict(task)
    return {name: resource[name] for name in TASK_FIELDS}


def listed_view(doc: bytes) -> bytes:
    """A listed task's document (``tqcore.documents.ListedTask.doc``) cut to the view's fields, as JSON text: the
    values (a payload may be 256 KiB of tiny objects) are copied as the text they are, never parsed."""
    fields = FIELDS.decode(doc)
    return msgspec.json.encode({name: fields[name] for name in TASK_FIELDS})
