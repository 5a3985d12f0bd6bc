"""The scheduler over in-memory fakes with a fixed clock: repeating tasks, catch-up, look-ahead, replicas, PATCH."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tq_scheduler.scheduler import Scheduler
from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask, UpdateTask
from tqcore.domain.errors import PreconditionFailed
from tqcore.domain.model import Event, EventType, Status
from tqcore.domain.task import Task
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
WORKER = "host-a:101"


# ----------------------------------------------------------------------------------------------- fixtures
@dataclass
class Stack:
    """The scheduler's world in memory: a fixed clock, the store, the queue, the API's use cases and an executor
    that runs every message sent (claim, then succeed) when told to."""

    clock: FixedClock
    store: InMemoryTaskStore
    queue: RecordingQueue
    registry: InMemoryRegistry
    tasks: Tasks
    executor: Attempts
    #: When the clock started (a whole minute): ``at(s)`` is ``s`` seconds later.
    epoch: datetime
    schedulers: list[Scheduler] = field(default_factory=list)
    #: How many of the queue's messages the executor has run.
    executed: int = 0

    def at(self, seconds: float) -> datetime:
        """``seconds`` after the clock's start."""
        return self.epoch + timedelta(seconds=seconds)

    def scheduler(self, *, interval_s: float = 1.0, catchup_s: int = 3600) -> Scheduler:
        """A scheduler process over this world (closed with the fixture)."""
        sched = Scheduler(self.store, self.queue, self.registry, self.clock, catchup_s=catchup_s, interval_s=interval_s)
        self.schedulers.append(sched)
        return sched

    def submit(self, **body: Any) -> Task:
        """POST /v1/tasks as alice."""
        cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", **body})
        return self.tasks.submit(cmd, ALICE).task

    def execute(self) -> None:
        """The executor runs every message sent since it last looked, each finishing at once."""
        while self.executed < len(self.queue.sent):
            message = self.queue.sent[self.executed]
            self.executed += 1
            claimed = self.executor.claim(Dispatch.of(message))
            assert claimed is not None, f"the executor could not claim {message.id}"
            assert self.executor.succeed(claimed, {"ok": True}) is not None

    def run_for(self, sched: Scheduler, seconds: int, *, execute: bool = True) -> None:
        """One pass a second for ``seconds`` seconds, the executor finishing each run before the next pass."""
        for _ in range(seconds):
            self.clock.advance(1)
            sched.run_once()
            if execute:
                self.execute()

    def sent(self, task_id: str) -> list[Task]:
        """The messages sent for one task, oldest first."""
        return [t for t in self.queue.sent if t.id == task_id]

    def events(self, task_id: str, kind: EventType) -> list[Event]:
        """The task's stored events of one type, oldest first."""
        return [e for e in self.store.events(task_id) if e.type is kind]


@pytest.fixture
def stack() -> Iterator[Stack]:
    clock = FixedClock()
    store, queue, registry = InMemoryTaskStore(), RecordingQueue(), InMemoryRegistry(["echo"])
    ids = (f"t-{n}" for n in itertools.count(1))
    tasks = Tasks(store, queue, Catalog(registry), clock, lambda: next(ids))
    executor = Attempts(store, queue, clock, worker=WORKER, lease_s=30, jitter=lambda: 0.0)
    world = Stack(clock, store, queue, registry, tasks, executor, epoch=clock.now())
    yield world
    for sched in world.schedulers:
        sched.close()


def scheduled_for(stack: Stack, task_id: str) -> list[datetime]:
    """The slots the task's runs were queued for, in order."""
    return [e.data["scheduled_for"] for e in stack.events(task_id, EventType.QUEUED)]


# --------------------------------------------------------------------------------------------- acceptance
def test_a_minutely_cron_task_is_queued_exactly_once_a_minute(stack: Stack) -> None:
    # Given a `* * * * *` task submitted half a minute in, and a scheduler passing every second
    stack.clock.advance(30)
    task = stack.submit(schedule={"cron": "* * * * *"})
    assert (task.status, task.next_run_at) == (Status.SCHEDULED, stack.at(60))
    sched = stack.scheduler()
    # When five minutes pass, the executor finishing each run at once
    stack.run_for(sched, 300)
    # Then the task was queued once on each of the five minutes, by the pass at the minute
    minutes = [stack.at(60 * k) for k in range(1, 6)]
    assert scheduled_for(stack, task.id) == minutes
    assert [e.at for e in stack.events(task.id, EventType.QUEUED)] == minutes
    assert len(stack.sent(task.id)) == len(minutes)
    # And no slot was skipped, every run succeeded, and the task waits for the next minute
    assert stack.events(task.id, EventType.RUN_SKIPPED) == []
    assert len(stack.events(task.id, EventType.SUCCEEDED)) == len(minutes)
    current = stack.store.get(task.id)
    assert (current.status, current.next_run_at, current.run_count) == (Status.SCHEDULED, stack.at(360), 5)


def test_after_the_scheduler_was_stopped_an_interval_task_runs_once_to_catch_up(stack: Stack) -> None:
    # Given an every-10-s task whose first run (at submit) is done, and a scheduler that ran for 5 s, then stopped
    task = stack.submit(schedule={"every_s": 10})
    stack.execute()
    stack.run_for(stack.scheduler(), 5)
    assert len(stack.sent(task.id)) == 1
    # When the clock moves on three minutes with no pass, and a restarted scheduler makes its first pass
    stack.clock.advance(180)
    restarted = stack.scheduler()
    queued = restarted.run_once()
    # Then exactly one run is queued, for the latest missed slot
    missed = [stack.at(s) for s in range(10, 186, 10)]  # every slot in (T0+5s, T0+185s]: T0+10s .. T0+180s
    assert queued == 1
    assert len(stack.sent(task.id)) == 2
    assert scheduled_for(stack, task.id)[-1] == missed[-1]
    # And the other missed slots are recorded as one catch-up skip
    (skipped,) = stack.events(task.id, EventType.RUN_SKIPPED)
    assert skipped.data["reason"] == "catch_up"
    assert skipped.data["count"] == len(missed) - 1 == 17
    assert skipped.data["first"] == missed[0]
    # And afterwards the task runs once per 10 s again
    stack.execute()
    stack.run_for(restarted, 60)
    assert scheduled_for(stack, task.id)[2:] == [stack.at(s) for s in range(190, 246, 10)]
    assert len(stack.events(task.id, EventType.RUN_SKIPPED)) == 1


@pytest.mark.parametrize("in_s", [90.0, 90.25])
def test_a_one_shot_task_is_queued_on_the_first_pass_at_or_after_its_time_and_never_before(
    stack: Stack, in_s: float
) -> None:
    # Given a one-shot task due at T0+in_s, and a scheduler passing every second
    task = stack.submit(schedule={"at": stack.at(in_s).isoformat()})
    sched = stack.scheduler()
    # When passes run until the task is queued
    while stack.store.get(task.id).status is Status.SCHEDULED:
        assert stack.clock.now() < stack.at(in_s + 1), "the task was not queued on the first pass after its time"
        stack.run_for(sched, 1, execute=False)
    # Then it was queued on the first pass at or after its time, once
    (queued,) = stack.events(task.id, EventType.QUEUED)
    assert stack.at(in_s) <= queued.at < stack.at(in_s + 1)
    assert [t.id for t in stack.queue.sent] == [task.id]
    stack.run_for(sched, 5, execute=False)
    assert len(stack.queue.sent) == 1


# ------------------------------------------------------------------------------------------------ pauses
@pytest.mark.parametrize(
    ("schedule", "pause_s"),
    [
        pytest.param(None, 5.0, id="nothing-due"),
        pytest.param({"at": 2.0}, 2.0, id="one-shot-within-interval"),
        pytest.param({"at": 7.0}, 5.0, id="one-shot-beyond-interval"),
        pytest.param({"every_s": 60, "start_at": 3.5}, 3.5, id="repeating-start-within-interval"),
        pytest.param({"every_s": 3}, 3.0, id="repeating-running-next-slot-within-interval"),
    ],
)
def test_the_pause_before_the_next_pass_ends_when_a_task_falls_due_within_the_interval(
    stack: Stack, schedule: dict[str, float] | None, pause_s: float
) -> None:
    # Given a scheduler with a 5 s interval, and maybe a task falling due some seconds from now
    sched = stack.scheduler(interval_s=5.0)
    if schedule is not None:
        stack.submit(schedule={k: stack.at(v).isoformat() if k != "every_s" else v for k, v in schedule.items()})
    # When it makes a pass
    assert sched.run_once() == 0
    # Then it pauses until the task falls due if that is within the interval, else for the interval
    assert sched.pause_s() == pytest.approx(pause_s)
    assert sched.pause_s() <= 5.0


def test_the_pause_counts_from_the_current_time(stack: Stack) -> None:
    # Given a pass that saw a task due in 4 s
    sched = stack.scheduler(interval_s=5.0)
    stack.submit(schedule={"at": stack.at(4).isoformat()})
    sched.run_once()
    # When a second passes before the pause is asked for
    stack.clock.advance(1)
    # Then only the remaining 3 s are waited
    assert sched.pause_s() == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------- replicas
def test_two_replicas_queue_each_of_200_tasks_due_at_the_same_instant_exactly_once(stack: Stack) -> None:
    # Given 200 repeating tasks whose first slot is the same instant, and two scheduler replicas
    ids = [stack.submit(schedule={"every_s": 60, "start_at": stack.at(30).isoformat()}).id for _ in range(200)]
    replicas = [stack.scheduler(catchup_s=60), stack.scheduler(catchup_s=60)]
    stack.clock.advance(30)
    # When both pass at that instant, concurrently
    start = threading.Barrier(len(replicas))
    counts: list[int] = []

    def one_pass(sched: Scheduler) -> None:
        start.wait()
        counts.append(sched.run_once())

    threads = [threading.Thread(target=one_pass, args=(sched,)) for sched in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then every task was sent exactly once between them
    sent = [t.id for t in stack.queue.sent]
    assert sorted(sent) == sorted(ids)
    assert len(set(sent)) == len(sent)
    assert sum(counts) == len(ids)
    assert all(len(stack.events(task_id, EventType.QUEUED)) == 1 for task_id in ids)


# -------------------------------------------------------------------------------------------------- PATCH
def test_a_payload_changed_between_passes_is_sent_with_the_next_run(stack: Stack) -> None:
    # Given an every-10-s task whose first run is done, the scheduler passing every second
    task = stack.submit(schedule={"every_s": 10}, payload={"v": 1})
    stack.execute()
    sched = stack.scheduler()
    stack.run_for(sched, 5)
    # When its payload is changed by PATCH
    stack.tasks.update(task.id, UpdateTask.model_validate({"payload": {"v": 2}}), ALICE)
    # Then the next run's message carries the new payload
    stack.run_for(sched, 5)
    first, second = stack.sent(task.id)
    assert (first.payload, second.payload) == ({"v": 1}, {"v": 2})
    assert scheduled_for(stack, task.id) == [stack.at(0), stack.at(10)]


def test_a_patch_with_a_stale_if_match_is_refused_and_changes_nothing(stack: Stack) -> None:
    # Given an every-10-s task read at some version, then changed by the scheduler's next pass
    task = stack.submit(schedule={"every_s": 10}, payload={"v": 1})
    stack.execute()
    seen = stack.store.get(task.id).version
    stack.run_for(stack.scheduler(), 10)
    current = stack.store.get(task.id)
    assert current.version > seen
    events = stack.store.events(task.id)
    # When a PATCH names the version read before
    with pytest.raises(PreconditionFailed):
        stack.tasks.update(task.id, UpdateTask.model_validate({"payload": {"v": 2}}), ALICE, if_match=seen)
    # Then the task is as it was
    after = stack.store.get(task.id)
    assert after == current
    assert after.payload == {"v": 1}
    assert stack.store.events(task.id) == events
    # And a PATCH naming the current version applies
    changed = stack.tasks.update(
        task.id, UpdateTask.model_validate({"payload": {"v": 2}}), ALICE, if_match=current.version
    )
    assert changed.payload == {"v": 2}


# -------------------------------------------------------------------------------------------------- overlap
def test_a_slot_due_during_a_long_run_with_overlap_allow_is_spawned_once_and_sent(stack: Stack) -> None:
    # Given an every-10-s task (overlap: allow) whose first run is claimed and still going
    task = stack.submit(schedule={"every_s": 10}, overlap="allow")
    claimed = stack.executor.claim(Dispatch.of(stack.queue.sent[0]))
    assert claimed is not None
    stack.executed = len(stack.queue.sent)
    sched = stack.scheduler()
    # When passes run over its next slot
    stack.run_for(sched, 12, execute=False)
    # Then the slot at T0+10s became its own task, created and sent once; the parent still runs
    slot_ms = (stack.at(10) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    child_id = f"{task.id}-{slot_ms}"
    assert [t.id for t in stack.queue.sent] == [task.id, child_id]
    child = stack.store.get(child_id)
    assert (child.status, child.parent_id) == (Status.QUEUED, task.id)
    assert stack.store.get(task.id).status is Status.RUNNING
    assert [e.data["task_id"] for e in stack.events(task.id, EventType.RUN_SPAWNED)] == [child_id]


def test_a_slot_due_during_a_long_run_with_overlap_skip_is_skipped_and_the_next_slot_runs(stack: Stack) -> None:
    # Given an every-10-s task (overlap: skip) whose first run is claimed and goes on for 15 s
    task = stack.submit(schedule={"every_s": 10})
    claimed = stack.executor.claim(Dispatch.of(stack.queue.sent[0]))
    assert claimed is not None
    stack.executed = len(stack.queue.sent)
    sched = stack.scheduler()
    stack.run_for(sched, 15, execute=False)
    # When the run ends and the scheduler goes on passing
    assert stack.executor.succeed(claimed, None) is not None
    stack.run_for(sched, 10)
    # Then the slot at T0+10s was skipped and the one at T0+20s ran
    assert [e.data["scheduled_for"] for e in stack.events(task.id, EventType.RUN_SKIPPED)] == [stack.at(10)]
    assert scheduled_for(stack, task.id) == [stack.at(0), stack.at(20)]
