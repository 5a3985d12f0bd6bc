"""Reading a page of a task's history without reading all of it: events forward from a position, runs
backward from the newest event (or a page's position), as far as the page needs and no further.

Runs are projected from a window of the newest events read backwards in growing chunks (each chunk twice the
last, so however far back a page must reach it reads and projects O(what it reached)): a page of 50 runs of a
task with 50,000 events reads a few hundred events, like a task with 5.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from tqcore.domain.errors import InvalidCursor
from tqcore.domain.model import Event
from tqcore.domain.runs import Run, RunsPosition, RunWindow, closes_runs, find_run, project_window

#: Events read per run a page asks for, at first: an attempt records about 4 (queued, claimed, its outcome, a
#: retry or the next slot), so one read usually holds the page and the run after it; if not, the next read
#: is twice as large.
EVENTS_PER_RUN = 5
#: The first read back when looking for one run (a run log).
FIRST_READ = 64


class EventSource(Protocol):
    """The two history reads of the task store these pages need (see ``tqcore.ports.TaskStore``)."""

    def events(self, task_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        """Events after ``after_seq``, oldest first, at most ``limit``."""
        ...

    def events_before(self, task_id: str, before_seq: int, limit: int) -> list[Event]:
        """At most ``limit`` events before ``before_seq``, newest first."""
        ...


@dataclass(frozen=True)
class ReadBack:
    """A window of a task's newest events (oldest first) and the runs projected from it."""

    events: list[Event]
    window: RunWindow


def read_back(
    store: EventSource,
    task_id: str,
    top: int,
    *,
    first: int,
    closed_by: Event | None = None,
    enough: Callable[[RunWindow], bool],
) -> ReadBack:
    """Read the task's events at or below ``top`` backwards, a chunk at a time (each twice the last), until
    the runs projected from them are ``enough`` or the oldest stored event is reached."""
    events: list[Event] = []
    low, chunk = top + 1, first
    while True:
        batch = store.events_before(task_id, low, chunk)  # newest first
        events[:0] = batch[::-1]
        if batch:
            low = batch[-1].seq
        complete = len(batch) < chunk or low <= 1
        window = project_window(events, complete=complete, closed_by=closed_by)
        if complete or enough(window):
            return ReadBack(events, window)
        chunk *= 2


def runs_page(
    store: EventSource, task_id: str, position: RunsPosition, limit: int
) -> tuple[list[Run], RunsPosition | None]:
    """A page of at most ``limit`` runs claimed before ``position.before``, newest first, and the next page's
    position (``None`` when none is older)."""

    def shown(window: RunWindow) -> list[Run]:
        return [run for run in window.runs if run.seq < position.before]

    def enough(window: RunWindow) -> bool:  # a full page of settled runs, and one older run: there is more
        runs = shown(window)
        return len(runs) > limit and runs[limit - 1].seq > window.unsettled_to

    closed_by = _close_event(store, task_id, position.close)
    read = read_back(
        store, task_id, position.top, first=EVENTS_PER_RUN * limit + 10, closed_by=closed_by, enough=enough
    )
    runs = shown(read.window)
    page = runs[:limit]
    if len(runs) <= limit:
        return page, None
    return page, position.older(read.window, read.events, page[-1].seq)


def newest_run(store: EventSource, task_id: str, top: int, run_id: str) -> Run | None:
    """The newest run with this id, reading back only as far as its claim."""

    def enough(window: RunWindow) -> bool:
        run = find_run(window.runs, run_id)
        return run is not None and run.seq > window.unsettled_to

    return find_run(read_back(store, task_id, top, first=FIRST_READ, enough=enough).window.runs, run_id)


def events_page(
    store: EventSource, task_id: str, after_seq: int, limit: int, version: int
) -> tuple[list[Event], int | None]:
    """At most ``limit`` events after ``after_seq``, oldest first, and the seq the next page starts after
    (``None`` once the page reaches ``version``, the newest event when the task was read)."""
    events = store.events(task_id, after_seq=after_seq, limit=limit)
    more = len(events) == limit and events[-1].seq < version
    return events, events[-1].seq if more else None


def _close_event(store: EventSource, task_id: str, seq: int) -> Event | None:
    """The task-end event a position names, if it is still stored (history expires); a position naming any
    other event is not one a page handed out."""
    if not seq:
        return None
    found = store.events(task_id, after_seq=seq - 1, limit=1)
    if not found or found[0].seq != seq:
        return None
    if not closes_runs(found[0]):
        raise InvalidCursor()
    return found[0]
