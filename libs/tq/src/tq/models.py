"""Typed resources of the tq HTTP API, as ``tq.Client`` returns them (contract sections 3, 4, 6 and 7).

A unit test checks every model against the gateway's OpenAPI document, so the two cannot drift apart. Fields a
newer server adds are kept (``model.model_extra``), never rejected; enumerations (``status``, ``priority``,
``type`` of an event...) are plain strings for the same reason: an older client still reads a newer server's
values. Only pydantic is imported here, so handler processes may import it cheaply.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ModelWrapValidatorHandler, PrivateAttr, model_validator

T = TypeVar("T")

#: Statuses a task never leaves on its own (``failed`` until it is redriven).
ENDED = frozenset({"succeeded", "failed", "cancelled", "expired"})


class Resource(BaseModel):
    """A JSON object of the API: unknown fields from a newer server are kept, not rejected."""

    model_config = ConfigDict(extra="allow")
    #: The JSON object this was read from, kept for :meth:`as_json`.
    _json: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_json(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        model = handler(data)
        if isinstance(data, dict) and isinstance(model, Resource):
            model._json = data
        return model

    def as_json(self) -> dict[str, Any]:
        """The object exactly as the API sent it (its timestamps, numbers and members as written: ``--json`` of
        the command line prints this); one built in code is dumped, without the members never set."""
        if self._json is not None:
            return self._json
        return self.model_dump(mode="json", exclude_unset=True)


class Retry(Resource):
    """How a run is retried: at most ``1 + max_retries`` attempts, backoff doubling from ``backoff_base_s``."""

    max_retries: int
    backoff_base_s: float
    backoff_max_s: float


class Schedule(Resource):
    """One of ``{at}``, ``{every_s, start_at?, end_at?}``, ``{cron, timezone, start_at?, end_at?}``."""

    at: datetime | None = None
    every_s: float | None = None
    cron: str | None = None
    timezone: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None


class LastError(Resource):
    """The last failed attempt's error (also a run's ``error``)."""

    type: str
    message: str


class Progress(Resource):
    """The newest progress report of a task's running (or last) attempt."""

    fraction: float | None
    message: str | None
    at: datetime


class Task(Resource):
    """A task (contract sections 3 and 6): what was submitted, where it is, and what came of it."""

    id: str
    type: str
    group: str
    owner: str
    name: str | None
    description: str | None
    payload: Any
    #: ``high`` · ``normal`` · ``low``
    priority: str
    pool: str
    #: ``scheduled`` · ``queued`` · ``running`` · ``retrying`` · ``succeeded`` · ``failed`` · ``cancelled`` ·
    #: ``expired`` · ``paused`` (a newer server may add more)
    status: str
    version: int
    attempts: int
    retries: int
    retry: Retry
    timeout_s: int
    schedule: Schedule | None
    #: ``skip`` · ``queue`` · ``allow``
    overlap: str
    expires_at: datetime | None
    idempotency_key: str | None
    worker: str | None
    created_at: datetime
    updated_at: datetime | None
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    next_run_at: datetime | None
    lease_expires_at: datetime | None
    run_count: int
    cancel_requested: bool
    #: When a user paused this repeating task (``None`` unless paused; an attempt running finishes first).
    paused_at: datetime | None
    parent_id: str | None
    last_error: LastError | None
    result: Any
    progress: Progress | None

    @property
    def ended(self) -> bool:
        """True once the task is ``succeeded``, ``failed``, ``cancelled`` or ``expired`` (what ``wait`` waits
        for; a repeating task ends only when cancelled, expired or past its schedule)."""
        return self.status in ENDED


class Run(Resource):
    """One attempt of a task (``GET /v1/tasks/{id}/runs``)."""

    run_id: str
    attempt: int
    #: ``running`` · ``succeeded`` · ``failed`` · ``timed_out`` · ``lost`` · ``cancelled``
    status: str
    scheduled_for: datetime | None
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    worker: str | None
    error: LastError | None
    log_size: int | None
    log_expires_at: datetime | None


class Event(Resource):
    """One event of a task's history (``GET /v1/tasks/{id}/events``, and the stream's events)."""

    seq: int
    #: ``submitted`` · ``queued`` · ``claimed`` · ``succeeded`` · ``failed`` · ``retry_scheduled`` · ...
    type: str
    at: datetime
    actor: str
    data: dict[str, Any]


class ProgressEvent(Resource):
    """A progress report as the stream sends it (``event: progress``): not an event of the history (no ``seq``)."""

    type: Literal["progress"] = "progress"
    fraction: float | None
    message: str | None
    at: datetime


class Queue(Resource):
    """One queue of ``GET /v1/queues`` with its approximate depths."""

    name: str
    pool: str
    #: ``high`` · ``normal`` · ``low``
    priority: str
    depth: int
    in_flight: int
    dlq_depth: int


class BulkOutcome(Resource):
    """What an action on many tasks of a group did: the tasks it acted on (or, on a dry run, would act on)."""

    count: int
    ids: list[str]
    dry_run: bool


class Redriven(BulkOutcome):
    """What a dead-letter redrive redrove (or, on a dry run, would redrive)."""


class CancelledTasks(BulkOutcome):
    """What a bulk cancel cancelled or asked to stop (or, on a dry run, would)."""


class FieldError(Resource):
    """One validation error of a 422: where (``loc``) and what (``msg``)."""

    loc: list[str | int]
    msg: str


class Problem(Resource):
    """An RFC 9457 problem document, as every error is answered (some problems add members: kept as extras)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[FieldError] | None = None


class BatchItem(Resource):
    """One item's answer of ``submit_many``: ``status`` 201 (created) or 200 (an idempotent replay) with
    ``task``, or a 4xx ``status`` with the ``error`` a single submit would have answered."""

    status: int
    task: Task | None = None
    error: Problem | None = None

    @property
    def ok(self) -> bool:
        """True if the task was created or replayed."""
        return self.task is not None


class Page(Resource, Generic[T]):
    """One page of a listing; ``next_cursor`` is ``None`` on the last page."""

    items: list[T]
    next_cursor: str | None
