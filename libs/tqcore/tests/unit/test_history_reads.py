"""Bounded history reads (issue 15): runs paged newest first from windows of the newest events read backwards
give exactly the projection of the whole history, whatever straddles a page boundary; events page forward; a
page of a 50,000-event history reads a page's worth; the projection is linear."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.domain.model import Event, EventType, RunStatus
from tqcore.domain.runs import Run, RunsPosition, find_run, project_runs, project_window
from tqcore.usecases.history_reads import events_page, newest_run, runs_page

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
TASK = "t-1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ev(seq: int, type: str, **data: Any) -> Event:
    return Event(seq=seq, type=EventType(type), at=at(seq), actor="someone", data=data)


class History:
    """A task's stored events (the two reads of the store port), counting how many events each read returns."""

    def __init__(self, events: list[Event]) -> None:
        self.stored = sorted(events, key=lambda e: e.seq)
        self.read = 0

    @property
    def version(self) -> int:
        return self.stored[-1].seq if self.stored else 0

    def events(self, task_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        later = [e for e in self.stored if e.seq > after_seq]
        page = later if limit is None else later[:limit]
        self.read += len(page)
        return page

    def events_before(self, task_id: str, before_seq: int, limit: int) -> list[Event]:
        page = [e for e in self.stored if e.seq < before_seq][::-1][:limit]
        self.read += len(page)
        return page


def every_page(history: History, limit: int) -> list[list[Run]]:
    pages: list[list[Run]] = []
    position: RunsPosition | None = RunsPosition.newest(history.version)
    while position is not None:
        assert position.fits(history.version)
        page, position = runs_page(history, TASK, position, limit)
        pages.append(page)
        assert len(pages) < 10_000
    return pages


# ------------------------------------------------------------------------------ paging equals the whole projection
def random_history(rng: random.Random, count: int, first_seq: int = 1) -> list[Event]:
    """Events in any order the store could hold (and many it never would): claims and outcomes that name
    older runs, task ends closing open runs, enqueues with and without their slot."""

    def run_id() -> dict[str, Any]:
        return {} if rng.random() < 0.1 else {"run_id": f"{rng.randint(1, 4)}.{rng.randint(1, 3)}"}

    kinds = [
        (25, lambda: ("claimed", {"attempt": rng.randint(1, 3), "worker": "w", **run_id()})),
        (10, lambda: ("succeeded", {"attempt": rng.randint(1, 3), "duration_ms": 5, **run_id()})),
        (
            10,
            lambda: (
                "failed",
                {"attempt": rng.randint(1, 3), "run_status": rng.choice(["failed", "lost"]), **run_id()},
            ),
        ),
        (5, lambda: ("lease_expired", {"attempt": rng.randint(1, 3)})),
        (3, lambda: ("cancelled", {"attempt": rng.randint(1, 3), **run_id()})),
        (2, lambda: ("dead_lettered", {})),
        (1, lambda: ("expired", {})),
        (8, lambda: ("queued", {"attempt": 1})),
        (4, lambda: ("queued", {"scheduled_for": at(rng.randint(0, 99)).isoformat()})),
        (3, lambda: ("queued", {"resend": 1})),
        (6, lambda: ("scheduled", {"next_run_at": at(rng.randint(0, 99)).isoformat()})),
        (3, lambda: ("retry_scheduled", {"next_run_at": at(rng.randint(0, 99))})),
        (3, lambda: ("redriven", {})),
        (2, lambda: ("updated", {})),
    ]
    weights = [weight for weight, _ in kinds]
    events = []
    for seq in range(first_seq, first_seq + count):
        ((_, make),) = rng.choices(kinds, weights)
        kind, data = make()
        events.append(ev(seq, kind, **data))
    return events


@pytest.mark.parametrize("seed", range(40))
def test_runs_paged_backwards_are_the_projection_of_the_whole_history(seed: int) -> None:
    rng = random.Random(seed)
    # Given any history, some of it already expired (a repeating task's oldest events fall away)
    history = History(random_history(rng, rng.randint(0, 300), first_seq=rng.choice([1, 1, 40])))
    whole = project_runs(history.stored)
    for limit in (1, 2, 3, 7, 50, 200):
        # When its runs are read a page at a time
        pages = every_page(history, limit)
        # Then the pages hold exactly the runs of the whole history, newest first, full but the last
        assert [run for page in pages for run in page] == whole
        assert all(len(page) == limit for page in pages[:-1])
        assert pages[-1] or len(pages) == 1
    # And a run found by its id (a run log) is the newest run of that id, as in the whole history
    for run_id in {run.run_id for run in whole} | {"9.9"}:
        assert newest_run(history, TASK, history.version, run_id) == find_run(whole, run_id)


def test_an_outcome_after_the_page_boundary_still_ends_its_run() -> None:
    # Given run 1.1 claimed at 10, run 2.1 claimed at 12, and 1.1's outcome only at 14
    events = [ev(1, "submitted"), *(ev(seq, "updated") for seq in range(2, 10))]
    events += [ev(10, "claimed", attempt=1, run_id="1.1"), ev(11, "queued", scheduled_for=at(99).isoformat())]
    events += [ev(12, "claimed", attempt=1, run_id="2.1"), ev(13, "succeeded", attempt=1, run_id="2.1")]
    events += [ev(14, "failed", attempt=1, run_id="1.1", run_status="timed_out", duration_ms=4000)]
    history = History(events)
    # When the runs are read one per page
    first, second = every_page(history, 1)
    # Then the second page shows 1.1 ended by the event after the boundary
    assert [(run.run_id, run.status) for run in first] == [("2.1", RunStatus.SUCCEEDED)]
    assert [(run.run_id, run.status, run.duration_ms) for run in second] == [("1.1", RunStatus.TIMED_OUT, 4000)]
    assert first[0].scheduled_for == at(99)


def test_a_task_end_long_after_a_page_closes_its_open_run() -> None:
    # Given a run left open (never ended), 200 more runs, then the task cancelled (which closes every open run)
    events = [ev(1, "claimed", attempt=1, run_id="1.1")]
    for n in range(200):
        seq = 2 + 2 * n
        events += [ev(seq, "claimed", attempt=2, run_id=f"{n + 2}.2"), ev(seq + 1, "succeeded", attempt=2)]
    events.append(ev(402, "cancelled"))
    history = History(events)
    # When the runs are read 50 at a time
    pages = every_page(history, 50)
    # Then the oldest page, which reads none of the newest events, shows the open run cancelled at 402
    oldest = pages[-1][-1]
    assert (oldest.run_id, oldest.status, oldest.finished_at) == ("1.1", RunStatus.CANCELLED, at(402))
    assert [run for page in pages for run in page] == project_runs(events)


def test_the_scheduled_time_of_a_run_comes_from_before_the_window() -> None:
    # Given runs whose slot was set long before their claim (many events in between)
    events = [ev(1, "scheduled", next_run_at=at(500)), ev(2, "queued", attempt=1)]
    events += [ev(seq, "updated") for seq in range(3, 100)]
    events += [ev(100, "claimed", attempt=1, run_id="1.1"), ev(101, "succeeded", attempt=1)]
    history = History(events)
    (page,) = every_page(history, 1)
    assert page[0].scheduled_for == at(500)


# ------------------------------------------------------------------------------------------- bounded reads
def repeating_history(runs: int) -> list[Event]:
    """A repeating task: each slot queued, claimed, succeeded and the next one scheduled (4 events a run)."""
    events = [ev(1, "submitted"), ev(2, "scheduled", next_run_at=at(60))]
    for n in range(runs):
        seq = 3 + 4 * n
        run = f"{n + 1}.1"
        events += [
            ev(seq, "queued", scheduled_for=at(60 * (n + 1)).isoformat()),
            ev(seq + 1, "claimed", attempt=1, run_id=run, worker="w"),
            ev(seq + 2, "succeeded", attempt=1, run_id=run, duration_ms=3),
            ev(seq + 3, "scheduled", next_run_at=at(60 * (n + 2))),
        ]
    return events


@pytest.mark.parametrize("runs", [1, 12_500])
def test_a_page_of_runs_reads_a_page_worth_of_history_however_long_it_is(runs: int) -> None:
    # Given a repeating task with 4 + 4 x runs events (50,002 for the long one)
    history = History(repeating_history(runs))
    # When its newest 50 runs, then the next 50, are read
    page, position = runs_page(history, TASK, RunsPosition.newest(history.version), 50)
    first_read = history.read
    if position is not None:
        runs_page(history, TASK, position, 50)
    # Then each page read at most a few hundred events, and the runs are the newest of the whole history
    assert page == project_runs(history.stored)[:50]
    assert first_read <= 5 * 50 + 10
    assert history.read <= 2 * (5 * 50 + 10)


def test_events_page_forward_until_the_newest() -> None:
    history = History(repeating_history(10))  # 42 events
    seen: list[int] = []
    after: int | None = 0
    while after is not None:
        page, after = events_page(history, TASK, after, 10, history.version)
        seen += [event.seq for event in page]
    assert seen == list(range(1, 43))
    assert history.read == 42  # each event read once, and no empty trailing page (42 is not a multiple of 10)


def test_the_last_full_page_of_events_has_no_cursor() -> None:
    history = History(repeating_history(2))  # 10 events
    assert events_page(history, TASK, 0, 10, history.version)[1] is None
    assert events_page(history, TASK, 0, 9, history.version)[1] == 9


# -------------------------------------------------------------------------------------------------- linear
class CountingData(dict[str, Any]):
    """Event data that counts how often the projection looks into it."""

    looks = 0

    def get(self, key: str, default: Any = None) -> Any:
        CountingData.looks += 1
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        CountingData.looks += 1
        return super().__contains__(key)


def test_the_projection_looks_at_each_event_a_bounded_number_of_times() -> None:
    # Given 2,000 runs, then 2,000 outcomes naming no run and 200 task ends (each once scanned every run)
    events = [Event(n, EventType.CLAIMED, at(n), "x", CountingData(attempt=1, run_id=f"{n}.1")) for n in range(1, 2001)]
    events += [Event(n, EventType.FAILED, at(n), "x", CountingData(attempt=9, run_id="x")) for n in range(2001, 4001)]
    events += [Event(n, EventType.DEAD_LETTERED, at(n), "x", CountingData()) for n in range(4001, 4201)]
    CountingData.looks = 0
    # When they are projected
    runs = project_window(events, complete=True).runs
    # Then every run is closed, and each event was looked into a few times, not once per run
    assert {run.status for run in runs} == {RunStatus.LOST}
    assert CountingData.looks <= 12 * len(events)
