"""Commands: validated requests to change the domain (pydantic models, no I/O)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tqcore.domain.errors import PayloadTooLarge
from tqcore.domain.model import Overlap, Priority, RetryPolicy, Schedule

Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]*$")]


#: JSON nodes (values and object keys) a payload may hold unless the validation context names another bound
#: (the gateway's ``TQ_MAX_JSON_NODES``). A 1,000-row table of four fields is about 9,000; the bound keeps a parsed
#: payload under about 1 MiB of Python objects, where 256 KiB of ``[{},{},...]`` (87,000 nodes) makes 6 MiB.
MAX_PAYLOAD_NODES = 10_000
#: The validation context's key for that bound: ``SubmitTask.model_validate(body, context={PAYLOAD_NODES: n})``.
PAYLOAD_NODES = "max_payload_nodes"


def json_nodes(value: Any, limit: int) -> int:
    """How many JSON nodes ``value`` holds (each value, and each object key), counting no further than past
    ``limit``: whatever the value, this looks at about ``limit`` nodes at most."""
    count, todo = 0, [value]
    while todo:
        node = todo.pop()
        count += 1
        if isinstance(node, dict):
            count += len(node)  # the keys
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if count + len(children) > limit:  # each child is a node at least
            return limit + 1
        todo.extend(children)
    return count


def _bounded_nodes(value: Any, info: ValidationInfo) -> Any:
    # Before pydantic validates (and copies) the payload: a hostile one is refused after ~limit steps.
    limit = (info.context or {}).get(PAYLOAD_NODES, MAX_PAYLOAD_NODES)
    if json_nodes(value, limit) > limit:
        raise PayloadTooLarge(
            f"the payload holds more than {limit} JSON nodes (values and object keys); send less, or store the "
            "data elsewhere and pass a reference"
        )
    return value


#: A task's payload: any JSON, bounded in nodes (the body limit bounds its bytes).
Payload = Annotated[JsonValue, BeforeValidator(_bounded_nodes)]


#: Accepted timestamps: anything a task could sensibly be scheduled or expire at.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def _to_utc(value: datetime) -> datetime:
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("timestamp out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"timestamp must be between {EARLIEST.year} and {LATEST.year}")
    return utc


#: An RFC 3339 timestamp with an offset, stored in UTC.
Timestamp = Annotated[AwareDatetime, AfterValidator(_to_utc)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySpec(_Strict):
    """``retry`` of a submit or update."""

    max_retries: int = Field(default=5, ge=0, le=20)
    backoff_base_s: float = Field(default=2.0, gt=0, le=3600)
    backoff_max_s: float = Field(default=300.0, gt=0, le=86400)

    @model_validator(mode="after")
    def _base_below_max(self) -> Self:
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError("backoff_base_s must not exceed backoff_max_s")
        return self

    def to_domain(self) -> RetryPolicy:
        """The domain's retry policy."""
        return RetryPolicy(self.max_retries, self.backoff_base_s, self.backoff_max_s)


class ScheduleSpec(_Strict):
    """``schedule`` of a submit or update: exactly one of ``at``, ``every_s`` or ``cron``."""

    at: Timestamp | None = None
    every_s: float | None = Field(default=None, ge=1, le=366 * 86400)
    cron: str | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)
    start_at: Timestamp | None = None
    end_at: Timestamp | None = None

    @field_validator("cron")
    @classmethod
    def _five_field_cron(cls, value: str | None) -> str | None:
        if value is not None and (len(value.split()) != 5 or not croniter.is_valid(value)):
            raise ValueError(f"not a valid five-field cron expression: {value!r}")
        return value

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"not an IANA time zone: {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        kinds = [k for k in ("at", "every_s", "cron") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a schedule has exactly one of 'at', 'every_s' or 'cron'")
        if self.at is not None and (self.start_at or self.end_at):
            raise ValueError("'start_at' and 'end_at' belong to repeating schedules")
        if self.timezone is not None and self.cron is None:
            raise ValueError("'timezone' belongs to cron schedules")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("'end_at' must be after 'start_at'")
        return self

    def to_domain(self) -> Schedule:
        """The domain's schedule, times in UTC."""
        return Schedule(
            at=self.at,
            every_s=self.every_s,
            cron=self.cron,
            timezone=self.timezone or ("UTC" if self.cron else None),
            start_at=self.start_at,
            end_at=self.end_at,
        )


class _TaskSettings(_Strict):
    """The fields a submit sets and a PATCH may change, with their defaults and bounds."""

    priority: Priority = Priority.NORMAL
    schedule: ScheduleSpec | None = None
    overlap: Overlap = Overlap.SKIP
    expires_at: Timestamp | None = None
    retry: RetrySpec = Field(default_factory=RetrySpec)
    timeout_s: int = Field(default=300, ge=1, le=43200)
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class SubmitTask(_TaskSettings):
    """The body of ``POST /v1/tasks``."""

    type: Name
    group: Name
    payload: Payload = Field(default_factory=dict)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=255)

    def fingerprint(self) -> str:
        """A stable hash of what was asked for, to tell a replay from a different request."""
        body = self.model_dump(mode="json", exclude={"idempotency_key"})
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def with_defaults(self, defaults: Mapping[str, Any]) -> SubmitTask:
        """This submit with a task type's declared defaults (``retry.max_retries``, ``timeout_s``, ``priority``)
        in the fields it leaves out; what it names stays. Defaults that do not validate are ignored."""
        filled: dict[str, Any] = {
            name: defaults[name]
            for name in ("timeout_s", "priority")
            if name in defaults and name not in self.model_fields_set
        }
        max_retries = (defaults.get("retry") or {}).get("max_retries")
        if max_retries is not None and "max_retries" not in self.retry.model_fields_set:
            filled["retry"] = {**self.retry.model_dump(exclude_unset=True), "max_retries": max_retries}
        if not filled:
            return self
        try:
            checked = _TaskSettings.model_validate(filled)
        except ValueError:
            return self
        return self.model_copy(update={name: getattr(checked, name) for name in filled})

    def task_fields(self) -> dict[str, Any]:
        """Keyword arguments for :meth:`Task.submit` beyond id, owner and time."""
        return {
            "type": self.type,
            "group": self.group,
            "payload": self.payload,
            "priority": self.priority,
            "idempotency_key": self.idempotency_key,
            "schedule": self.schedule.to_domain() if self.schedule else None,
            "overlap": self.overlap,
            "expires_at": self.expires_at,
            "retry": self.retry.to_domain(),
            "timeout_s": self.timeout_s,
            "name": self.name,
            "description": self.description,
        }


class UpdateTask(_TaskSettings):
    """The body of ``PATCH /v1/tasks/{id}``: the fields to change (at least one); ``null`` clears a nullable one."""

    payload: Payload = None

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("name at least one field to change")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields given, as domain values (defaults above only stand for fields left out)."""
        domain: dict[str, Any] = {
            "schedule": self.schedule.to_domain() if self.schedule else None,
            "retry": self.retry.to_domain(),
        }
        return {name: domain.get(name, getattr(self, name)) for name in self.model_fields_set}


#: Submits one ``POST /v1/tasks:batch`` carries at most.
MAX_BATCH = 500


class SubmitBatch(_Strict):
    """The body of ``POST /v1/tasks:batch``: 1 to ``MAX_BATCH`` submit bodies, each validated on its own (as
    :class:`SubmitTask`) so that one bad item is that item's error, not the batch's."""

    tasks: list[Any] = Field(min_length=1, max_length=MAX_BATCH)
