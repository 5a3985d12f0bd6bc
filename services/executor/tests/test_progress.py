"""The progress throttle: the first report at once, then at most one write a second, the newest winning."""

from __future__ import annotations

import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tq import Progress
from tq_executor import isolation
from tq_executor.handlers import Job
from tq_executor.isolation import HandlerProcess, Stopped
from tq_executor.progress import ProgressReporter, ProgressWriter
from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Progress as Stored
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
MODULES = ["sample_handlers"]

sys.path.insert(0, str(Path(__file__).parent))  # so handler processes can import sample_handlers


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
    # The first report is written at the writer's first tick
    reporter.report(Progress(0.1, "one"))
    reporter.tick()
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
    reporter.tick()  # the writer's
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


class SlowStore(InMemoryTaskStore):
    """A DynamoDB that takes 5 s (its retries) to write a progress report."""

    def report_progress(self, task_id: str, claim_seq: int, report: Stored) -> bool:
        time.sleep(5)
        return super().report_progress(task_id, claim_seq, report)


def test_a_slow_progress_write_never_holds_back_a_stop() -> None:
    # Given an attempt whose handler reports progress, then runs on, and a progress write that takes 5 s
    store, attempts, task_id = claimed()
    slow = Attempts(SlowStore(), RecordingQueue(), attempts.clock, worker="host:1", lease_s=30)
    writer = ProgressWriter()
    reporter = ProgressReporter(slow, store.get(task_id), interval_s=1.0, writer=writer)
    isolation.prepare(MODULES)
    process = HandlerProcess(MODULES)
    stop = threading.Event()
    job = Job(task_id, "t-progress", "team-a", 1, {"fractions": [0.5], "then_s": 60}, 60, "host:1")
    try:
        # When the heartbeat says stop (its lease is about to lapse) while the write is under way
        threading.Timer(1.0, stop.set).start()
        started = time.monotonic()
        with pytest.raises(Stopped):
            process.run(job, stop, progress=reporter)
        # Then the attempt stops within a poll or so of it, not after the write
        assert time.monotonic() - started < 1.0 + 0.5
    finally:
        process.close()
        reporter.discard()


def test_the_last_flush_waits_for_a_write_under_way_so_an_older_report_never_lands_after_it() -> None:
    store, attempts, task_id = claimed()
    slow = Attempts(SlowStore(), RecordingQueue(), attempts.clock, worker="host:1", lease_s=30)
    written: list[str | None] = []
    slow.report_progress = lambda task, fraction, message: written.append(message) or True  # type: ignore[method-assign]
    reporter = ProgressReporter(slow, store.get(task_id), interval_s=0.0, writer=ProgressWriter(poll_s=0.01))
    for n in range(200):
        reporter.report(Progress(n / 200, f"r{n}"))
    reporter.report(Progress(1.0, "last"))
    reporter.flush()
    time.sleep(0.1)  # the writer's next ticks write nothing more
    assert written[-1] == "last"
    assert written.count("last") == 1
