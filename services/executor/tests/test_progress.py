"""The progress throttle: the first report at once, then at most one write a second, the newest winning."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tq import Progress
from tq_executor.progress import ProgressReporter
from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Progress as Stored
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def claimed() -> tuple[InMemoryTaskStore, Attempts, str]:
    store, queue, clock = InMemoryTaskStore(), RecordingQueue(), FixedClock(datetime(2026, 3, 1, tzinfo=UTC))
    tasks = Tasks(store, queue, Catalog(InMemoryRegistry(["t"])), clock, lambda: "t-1")
    task = tasks.submit(SubmitTask(type="t", group="team-a"), ALICE).task
    attempts = Attempts(store, queue, clock, worker="host:1", lease_s=30)
    assert attempts.claim(Dispatch.of(task)) is not None
    return store, attempts, task.id


def test_reports_are_written_at_most_once_per_interval_and_the_newest_wins() -> None:
    store, attempts, task_id = claimed()
    ticks = Ticks()
    reporter = ProgressReporter(attempts, store.get(task_id), interval_s=1.0, monotonic=ticks)
    # The first report is written at once
    reporter.report(Progress(0.1, "one"))
    assert (reporter.writes, store.get(task_id).progress) == (1, Stored(0.1, "one", attempts.clock.now()))
    # Those within the interval are held, the newest replacing the older
    ticks.now += 0.3
    reporter.report(Progress(0.2, "two"))
    ticks.now += 0.3
    reporter.report(Progress(0.3, "three"))
    reporter.tick()
    assert reporter.writes == 1
    # Once the interval has passed, the next poll writes the newest
    ticks.now += 0.5
    reporter.tick()
    assert reporter.writes == 2
    progress = store.get(task_id).progress
    assert progress is not None
    assert progress.message == "three"
    # and a flush with nothing held writes nothing
    reporter.flush()
    assert reporter.writes == 2


def test_a_held_report_is_flushed_before_the_outcome() -> None:
    store, attempts, task_id = claimed()
    ticks = Ticks()
    reporter = ProgressReporter(attempts, store.get(task_id), interval_s=1.0, monotonic=ticks)
    reporter.report(Progress(0.5, None))
    reporter.report(Progress(1.0, "done"))
    reporter.flush()
    progress = store.get(task_id).progress
    assert progress is not None
    assert (progress.fraction, progress.message, reporter.writes) == (1.0, "done", 2)


class BrokenStore(InMemoryTaskStore):
    def report_progress(self, task_id: str, claim_seq: int, report: Stored) -> bool:
        raise RuntimeError("the table is gone")


def test_a_report_that_cannot_be_written_is_dropped_without_raising() -> None:
    store, attempts, task_id = claimed()
    broken = Attempts(BrokenStore(), RecordingQueue(), attempts.clock, worker="host:1", lease_s=30)
    reporter = ProgressReporter(broken, store.get(task_id), interval_s=1.0, monotonic=Ticks())
    reporter.report(Progress(0.5, "half way"))
    reporter.flush()
    assert reporter.writes == 0
