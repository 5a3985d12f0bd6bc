"""The task's JSON form and back: what adapters persist and dispatches carry (the API shows a subset of it, the
gateway's ``TaskView``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tqcore.domain.model import ErrorInfo, Event, EventType, Overlap, Priority, Progress, RetryPolicy, Schedule, Status
from tqcore.domain.state import DEFAULT_POOL
from tqcore.domain.task import Task


def ts(value: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``, millisecond precision."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_ts(value: str | None) -> datetime | None:
    """The inverse of :func:`ts` (accepts any RFC 3339 offset)."""
    if value is None:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return ts(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def schedule_to_dict(schedule: Schedule | None) -> dict[str, Any] | None:
    """The ``schedule`` object, without unset keys."""
    if schedule is None:
        return None
    raw = {
        "at": ts(schedule.at),
        "every_s": schedule.every_s,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "start_at": ts(schedule.start_at),
        "end_at": ts(schedule.end_at),
    }
    return {k: v for k, v in raw.items() if v is not None}


def task_to_dict(task: Task) -> dict[str, Any]:
    """Every field of the task: the resource's (contract section 3, and ``cancel_requested``, ``paused_at``,
    ``lease_expires_at``, ``parent_id``) and the services' bookkeeping the API does not show (``claim_seq``,
    ``resends``, ``poison_strikes``, ``next_slot_at``, ``waiting_slot``, ``run_slot``, ``trace_context``)."""
    return {
        "id": task.id,
        "type": task.type,
        "group": task.group,
        "owner": task.owner,
        "name": task.name,
        "description": task.description,
        "payload": task.payload,
        "priority": task.priority.value,
        "pool": task.pool,
        "status": task.status.value,
        "version": task.version,
        "attempts": task.attempts,
        "retries": task.retries,
        "retry": {
            "max_retries": task.retry.max_retries,
            "backoff_base_s": task.retry.backoff_base_s,
            "backoff_max_s": task.retry.backoff_max_s,
        },
        "timeout_s": task.timeout_s,
        "schedule": schedule_to_dict(task.schedule),
        "overlap": task.overlap.value,
        "expires_at": ts(task.expires_at),
        "idempotency_key": task.idempotency_key,
        "worker": task.worker,
        "created_at": ts(task.created_at),
        "updated_at": ts(task.updated_at),
        "queued_at": ts(task.queued_at),
        "started_at": ts(task.started_at),
        "finished_at": ts(task.finished_at),
        "next_run_at": ts(task.next_run_at),
        "lease_expires_at": ts(task.lease_expires_at),
        "run_count": task.run_count,
        "resends": task.resends,
        "poison_strikes": task.poison_strikes,
        "claim_seq": task.claim_seq,
        "cancel_requested": task.cancel_requested,
        "paused_at": ts(task.paused_at),
        "next_slot_at": ts(task.next_slot_at),
        "waiting_slot": ts(task.waiting_slot),
        "run_slot": ts(task.run_slot),
        "parent_id": task.parent_id,
        "last_error": None
        if task.last_error is None
        else {"type": task.last_error.type, "message": task.last_error.message},
        "result": task.result,
        "progress": progress_to_dict(task.progress),
        "trace_context": task.trace_context,
    }


def task_from_dict(raw: dict[str, Any]) -> Task:
    """Rebuild a task from :func:`task_to_dict`'s output."""
    sched = raw.get("schedule")
    err = raw.get("last_error")
    return Task(
        id=raw["id"],
        type=raw["type"],
        group=raw["group"],
        owner=raw["owner"],
        name=raw.get("name"),
        description=raw.get("description"),
        payload=raw.get("payload"),
        priority=Priority(raw["priority"]),
        pool=raw.get("pool", DEFAULT_POOL),
        status=Status(raw["status"]),
        version=raw["version"],
        attempts=raw["attempts"],
        retry=RetryPolicy(**raw["retry"]),
        timeout_s=raw["timeout_s"],
        schedule=None
        if sched is None
        else Schedule(
            at=parse_ts(sched.get("at")),
            every_s=sched.get("every_s"),
            cron=sched.get("cron"),
            timezone=sched.get("timezone"),
            start_at=parse_ts(sched.get("start_at")),
            end_at=parse_ts(sched.get("end_at")),
        ),
        overlap=Overlap(raw["overlap"]),
        expires_at=parse_ts(raw.get("expires_at")),
        idempotency_key=raw.get("idempotency_key"),
        worker=raw.get("worker"),
        created_at=_required_ts(raw["created_at"]),
        updated_at=parse_ts(raw.get("updated_at")),
        queued_at=parse_ts(raw.get("queued_at")),
        started_at=parse_ts(raw.get("started_at")),
        finished_at=parse_ts(raw.get("finished_at")),
        next_run_at=parse_ts(raw.get("next_run_at")),
        lease_expires_at=parse_ts(raw.get("lease_expires_at")),
        run_count=raw.get("run_count", 0),
        resends=raw.get("resends", 0),
        poison_strikes=raw.get("poison_strikes", 0),
        claim_seq=raw.get("claim_seq"),
        cancel_requested=raw.get("cancel_requested", False),
        paused_at=parse_ts(raw.get("paused_at")),
        next_slot_at=parse_ts(raw.get("next_slot_at")),
        waiting_slot=parse_ts(raw.get("waiting_slot")),
        run_slot=parse_ts(raw.get("run_slot")),
        parent_id=raw.get("parent_id"),
        last_error=None if err is None else ErrorInfo(err["type"], err["message"]),
        result=raw.get("result"),
        progress=progress_from_dict(raw.get("progress")),
        trace_context=raw.get("trace_context"),
    )


def progress_to_dict(progress: Progress | None) -> dict[str, Any] | None:
    """The task resource's ``progress``: ``{"fraction", "message", "at"}`` or ``None``."""
    if progress is None:
        return None
    return {"fraction": progress.fraction, "message": progress.message, "at": ts(progress.at)}


def progress_from_dict(raw: dict[str, Any] | None) -> Progress | None:
    """The inverse of :func:`progress_to_dict`."""
    if raw is None:
        return None
    return Progress(raw.get("fraction"), raw.get("message"), _required_ts(raw["at"]))


def _required_ts(value: str) -> datetime:
    parsed = parse_ts(value)
    assert parsed is not None
    return parsed


def event_to_dict(event: Event) -> dict[str, Any]:
    """One item of ``GET /v1/tasks/{id}/events``."""
    return {
        "seq": event.seq,
        "type": event.type.value,
        "at": ts(event.at),
        "actor": event.actor,
        "data": _jsonable(event.data),
    }


def event_from_dict(raw: dict[str, Any]) -> Event:
    """Rebuild an event from :func:`event_to_dict`'s output."""
    return Event(
        seq=raw["seq"],
        type=EventType(raw["type"]),
        at=_required_ts(raw["at"]),
        actor=raw["actor"],
        data=raw.get("data") or {},
    )
