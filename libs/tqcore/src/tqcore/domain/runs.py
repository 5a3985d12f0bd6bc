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
    return project_window(events, complete=True).runs


@dataclass(frozen=True)
class RunWindow:
    """The runs a contiguous window of a task's newest events records, and what the window cannot tell.

    ``runs``: newest first, every run claimed in the window; each one's status is final as far as the window
    and the events after it that were handed in go. ``unsettled_to``: a run claimed at or below this seq came
    while the window could not know its ``scheduled_for`` (it depends on events older than the window; 0 when
    every run is settled). ``ends``: for each outcome event, the claim seq of the run it ended, or ``None``
    when that run was claimed before the window (or never): what the next, older window still has to re-read.
    """

    runs: list[Run]
    unsettled_to: int
    ends: list[tuple[int, int | None]]


#: ``scheduled_for``/``next_run_at`` before a window that does not start at the oldest event: not known yet.
_UNKNOWN: Any = object()


def project_window(events: Iterable[Event], *, complete: bool, closed_by: Event | None = None) -> RunWindow:
    """Project the runs of a window of a task's events in one pass, linear in the events.

    ``complete``: the window starts at the task's oldest stored event (else what came before is unknown).
    ``closed_by``: a task-end event after the window that closes the runs still open at its end (only that:
    whichever run it ended itself was claimed after the window's runs).
    """
    fold = _Fold(complete)
    for event in sorted(events, key=lambda e: e.seq):
        fold.apply(event)
    if closed_by is not None and closed_by.type in _CLOSED_BY_TASK_END:
        fold.close_open(closed_by, _CLOSED_BY_TASK_END[closed_by.type])
    return RunWindow(fold.runs[::-1], fold.unsettled_to, fold.ends)


class _Fold:
    """The state of one pass over events, oldest first: the runs so far and indexes into them, so that each
    event costs O(1) (an outcome finds its run by run id or attempt; a task's end closes only the open runs)."""

    def __init__(self, complete: bool) -> None:
        self.runs: list[Run] = []
        self.ends: list[tuple[int, int | None]] = []
        self.unsettled_to = 0
        self._newest_by_run_id: dict[str, int] = {}
        self._newest_by_attempt: dict[Any, int] = {}
        self._open: dict[int, None] = {}  # indexes of running runs, in claim order
        initial = None if complete else _UNKNOWN
        self._next_run_at: Any = initial  # the task's next_run_at as the events left it
        self._scheduled_for: Any = initial  # next_run_at when the task was last queued

    def apply(self, event: Event) -> None:
        data = event.data
        if event.type in (EventType.SCHEDULED, EventType.RETRY_SCHEDULED):
            self._next_run_at = _time(data.get("next_run_at"))
        elif event.type is EventType.QUEUED:
            if "scheduled_for" in data:  # the slot (or retry time) the enqueue was for
                self._scheduled_for, self._next_run_at = _time(data["scheduled_for"]), None
            elif "resend" not in data:  # a re-send repeats the same enqueue
                self._scheduled_for, self._next_run_at = self._next_run_at, None
        elif event.type is EventType.CLAIMED:
            self._start(event)
        elif event.type is EventType.LEASE_EXPIRED:
            self._end(event, RunStatus.LOST, by_attempt=True)
        elif event.type in (EventType.SUCCEEDED, EventType.FAILED) or (
            event.type is EventType.CANCELLED and "run_id" in data
        ):
            self._end(event, _outcome(event))
        if event.type in _CLOSED_BY_TASK_END:
            self.close_open(event, _CLOSED_BY_TASK_END[event.type])
            self._next_run_at = self._scheduled_for = None

    def _start(self, event: Event) -> None:
        scheduled_for = self._scheduled_for
        if scheduled_for is _UNKNOWN:
            self.unsettled_to, scheduled_for = event.seq, None
        index = len(self.runs)
        run = _started(event, scheduled_for)
        self.runs.append(run)
        self._newest_by_run_id[run.run_id] = index
        self._newest_by_attempt[run.attempt] = index
        self._open[index] = None
        self._scheduled_for = None

    def _end(self, event: Event, status: RunStatus, *, by_attempt: bool = False) -> None:
        """End the newest run the event names (run ids repeat after a redrive, so the newest one wins)."""
        data = event.data
        if by_attempt or "run_id" not in data:
            index = _lookup(self._newest_by_attempt, data.get("attempt"))
        else:
            index = _lookup(self._newest_by_run_id, data.get("run_id"))
        self.ends.append((event.seq, None if index is None else self.runs[index].seq))
        if index is None:
            return  # an outcome without a claim we know of: nothing to project
        run = self.runs[index]
        duration = data.get("duration_ms")
        self.runs[index] = replace(
            run,
            status=status,
            finished_at=event.at,
            duration_ms=int(duration) if duration is not None else run.duration_ms,
            error=_error(data.get("error")) or run.error,
            log_size=_size(data.get("log_size"), run.log_size),
            log_expires_at=_time(data.get("log_expires_at")) or run.log_expires_at,
        )
        self._mark(index, status)

    def close_open(self, event: Event, status: RunStatus) -> None:
        """The task ended: every run still open ends with it."""
        for index in list(self._open):
            self.runs[index] = replace(self.runs[index], status=status, finished_at=event.at)
        self._open.clear()

    def _mark(self, index: int, status: RunStatus) -> None:
        if status is RunStatus.RUNNING:
            self._open[index] = None
        else:
            self._open.pop(index, None)


def _lookup(newest: dict[Any, int], key: Any) -> int | None:
    """``newest[key]``, or ``None`` for a missing or unhashable key (event data is whatever was stored)."""
    try:
        return newest.get(key)
    except TypeError:
        return None


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


def _size(value: Any, default: int | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default


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


@dataclass(frozen=True)
class RunsPosition:
    """Where a page of runs (newest first) starts: the runs claimed before ``before``. Outcomes of those runs
    may come after their claims, so the page reads the events up to ``top`` (at least ``before - 1``); after
    ``top`` only ``close``, the first task-end event there (0: none), can still end one of them."""

    before: int
    top: int
    close: int = 0

    @classmethod
    def newest(cls, version: int) -> RunsPosition:
        """The first page of a task whose newest event is ``version``."""
        return cls(version + 1, version)

    def fits(self, version: int) -> bool:
        """Whether a position can come from a task whose newest event is ``version`` (a cursor is opaque, not
        tamper-proof: a position that fits can at worst show its own caller an odd page of a task they see)."""
        return 1 <= self.before <= self.top + 1 <= version + 1 and (not self.close or self.top < self.close <= version)

    def older(self, window: RunWindow, events: Sequence[Event], oldest_shown: int) -> RunsPosition:
        """The position of the page after one whose oldest run was claimed at ``oldest_shown``, read from
        ``window`` (the projection of ``events``, oldest first, up to ``top``). The next page re-reads every
        event that ended (or may end: its run is older than the window) a run claimed before ``oldest_shown``,
        so an attempt whose claim and outcome straddle the page boundary still shows its outcome."""
        top = max(
            [oldest_shown - 1]
            + [seq for seq, claim in window.ends if seq >= oldest_shown and (claim is None or claim < oldest_shown)]
        )
        close = next((e.seq for e in events if e.seq > top and e.type in _CLOSED_BY_TASK_END), self.close)
        return RunsPosition(oldest_shown, top, close)


def closes_runs(event: Event) -> bool:
    """Whether the event ends the task and so closes every run still open (a page's ``close``)."""
    return event.type in _CLOSED_BY_TASK_END


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
