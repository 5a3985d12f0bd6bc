"""Runs: one item per attempt, a pure projection of the task's events (the event store is the source of truth)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tqcore.domain.codec import parse_ts, ts
from tqcore.domain.model import ErrorInfo, Event, EventType, RunStatus

#: Events after which no attempt can still be running: an open run is closed with this status.
_CLOSED_BY_TASK_END = {
    EventType.DEAD_LETTERED: RunStatus.LOST,  # e.g. SQS dead-lettered the message of a running attempt
    EventType.EXPIRED: RunStatus.LOST,
    EventType.CANCELLED: RunStatus.CANCELLED,
}


@dataclass(frozen=True)
class Run:
    """One attempt of a task as ``GET /v1/tasks/{id}/runs`` lists it; ``seq`` is its ``claimed`` event's (the
    claim's token, ``claim_seq``, which also names the attempt's stored log)."""

    seq: int
    run_id: str
    attempt: int
    status: RunStatus
    started_at: datetime
    worker: str | None
    scheduled_for: datetime | None = None
    finished_at: datetime | None = None
    duration_ms: int | None = None
    error: ErrorInfo | None = None
    log_size: int | None = None
    log_expires_at: datetime | None = None


def project_runs(events: Iterable[Event]) -> list[Run]:
    """The runs the events record, newest first (by the ``claimed`` event's sequence number)."""
    runs: list[Run] = []
    next_run_at: datetime | None = None  # the task's next_run_at as the events left it
    scheduled_for: datetime | None = None  # next_run_at when the task was last queued
    for event in sorted(events, key=lambda e: e.seq):
        data = event.data
        if event.type in (EventType.SCHEDULED, EventType.RETRY_SCHEDULED):
            next_run_at = _time(data.get("next_run_at"))
        elif event.type is EventType.QUEUED:
            if "scheduled_for" in data:  # the slot (or retry time) the enqueue was for
                scheduled_for, next_run_at = _time(data["scheduled_for"]), None
            elif "resend" not in data:  # a re-send repeats the same enqueue
                scheduled_for, next_run_at = next_run_at, None
        elif event.type is EventType.CLAIMED:
            runs.append(_started(event, scheduled_for))
            scheduled_for = None
        elif event.type is EventType.LEASE_EXPIRED:
            _end(runs, event, RunStatus.LOST, by_attempt=True)
        elif event.type in (EventType.SUCCEEDED, EventType.FAILED) or (
            event.type is EventType.CANCELLED and "run_id" in data
        ):
            _end(runs, event, _outcome(event))
        if event.type in _CLOSED_BY_TASK_END:
            _close_open(runs, event, _CLOSED_BY_TASK_END[event.type])
            next_run_at = scheduled_for = None
    return runs[::-1]


def _started(event: Event, scheduled_for: datetime | None) -> Run:
    attempt = int(event.data.get("attempt", 0))
    worker = event.data.get("worker")
    return Run(
        seq=event.seq,
        run_id=str(event.data.get("run_id") or f"seq-{event.seq}"),
        attempt=attempt,
        status=RunStatus.RUNNING,
        started_at=event.at,
        worker=None if worker is None else str(worker),
        scheduled_for=scheduled_for,
    )


def _outcome(event: Event) -> RunStatus:
    if event.type is EventType.SUCCEEDED:
        return RunStatus.SUCCEEDED
    if event.type is EventType.CANCELLED:
        return RunStatus.CANCELLED
    try:
        return RunStatus(event.data.get("run_status", RunStatus.FAILED.value))
    except ValueError:
        return RunStatus.FAILED


def _end(runs: list[Run], event: Event, status: RunStatus, *, by_attempt: bool = False) -> None:
    """End the newest run the event names (run ids repeat after a redrive, so the newest one wins)."""
    index = _find(runs, event.data, by_attempt=by_attempt)
    if index is None:
        return  # an outcome without a claim we know of: nothing to project
    run = runs[index]
    duration = event.data.get("duration_ms")
    runs[index] = replace(
        run,
        status=status,
        finished_at=event.at,
        duration_ms=int(duration) if duration is not None else run.duration_ms,
        error=_error(event.data.get("error")) or run.error,
        log_size=_size(event.data.get("log_size"), run.log_size),
        log_expires_at=_time(event.data.get("log_expires_at")) or run.log_expires_at,
    )


def _size(value: Any, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


def _find(runs: Sequence[Run], data: dict[str, Any], *, by_attempt: bool) -> int | None:
    for index in range(len(runs) - 1, -1, -1):
        run = runs[index]
        if (by_attempt or "run_id" not in data) and run.attempt == data.get("attempt"):
            return index
        if not by_attempt and run.run_id == data.get("run_id"):
            return index
    return None


def _close_open(runs: list[Run], event: Event, status: RunStatus) -> None:
    for index, run in enumerate(runs):
        if run.status is RunStatus.RUNNING:
            runs[index] = replace(run, status=status, finished_at=event.at)


def _error(raw: Any) -> ErrorInfo | None:
    if not isinstance(raw, dict):
        return None
    return ErrorInfo(str(raw.get("type", "Error")), str(raw.get("message", "")))


def _time(value: Any) -> datetime | None:
    """Event data holds datetimes in memory and RFC 3339 strings once stored."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return parse_ts(value)
        except ValueError:
            return None
    return None


def find_run(runs: Sequence[Run], run_id: str) -> Run | None:
    """The newest run with this id (run ids repeat after a redrive: the newest is the one ``/runs`` shows first)."""
    return next((run for run in runs if run.run_id == run_id), None)


def page_of_runs(runs: Sequence[Run], *, limit: int, before_seq: int | None = None) -> tuple[list[Run], int | None]:
    """A page of newest-first ``runs`` older than ``before_seq``, and where the next page starts (or ``None``)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    rest = [run for run in runs if before_seq is None or run.seq < before_seq]
    page = rest[:limit]
    return page, (page[-1].seq if len(rest) > limit else None)


def run_to_dict(run: Run) -> dict[str, Any]:
    """One item of ``GET /v1/tasks/{id}/runs`` (contract section 4)."""
    return {
        "run_id": run.run_id,
        "attempt": run.attempt,
        "status": run.status.value,
        "scheduled_for": ts(run.scheduled_for),
        "started_at": ts(run.started_at),
        "finished_at": ts(run.finished_at),
        "duration_ms": run.duration_ms,
        "worker": run.worker,
        "error": None if run.error is None else {"type": run.error.type, "message": run.error.message},
        "log_size": run.log_size,
        "log_expires_at": ts(run.log_expires_at),
    }
