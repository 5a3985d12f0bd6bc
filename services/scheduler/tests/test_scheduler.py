"""The scheduler over in-memory fakes with a fixed clock."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from tq_scheduler.scheduler import MARK, Scheduler
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import EventType, Status
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def parts(clock: FixedClock) -> tuple[Tasks, InMemoryTaskStore, RecordingQueue, InMemoryRegistry]:
    store, queue, registry = InMemoryTaskStore(), RecordingQueue(), InMemoryRegistry(["echo"])
    ids = (f"t-{n}" for n in itertools.count(1))
    return Tasks(store, queue, Catalog(registry), clock, lambda: next(ids)), store, queue, registry


def scheduler(parts: tuple, clock: FixedClock, catchup_s: int = 3600) -> Scheduler:  # type: ignore[type-arg]
    _, store, queue, registry = parts
    return Scheduler(store, queue, registry, clock, catchup_s=catchup_s)


def schedule_at(tasks: Tasks, clock: FixedClock, in_s: float, **extra: object) -> str:
    at = (clock.now() + timedelta(seconds=in_s)).isoformat()
    return tasks.submit(
        SubmitTask.model_validate({"type": "echo", "group": "team-a", "schedule": {"at": at}, **extra}), ALICE
    ).task.id


def test_a_one_shot_task_is_queued_once_its_time_has_come_and_not_before(parts: tuple, clock: FixedClock) -> None:
    tasks, store, queue, _ = parts
    task_id = schedule_at(tasks, clock, 90)
    sched = scheduler(parts, clock)
    assert sched.run_once() == 0
    clock.advance(89)
    assert sched.run_once() == 0
    clock.advance(1.5)
    assert sched.run_once() == 1
    assert sched.run_once() == 0
    assert store.get(task_id).status is Status.QUEUED
    assert [t.id for t in queue.sent] == [task_id]


def test_after_a_long_outage_the_shared_mark_still_finds_old_due_work(parts: tuple, clock: FixedClock) -> None:
    tasks, store, _, registry = parts
    # Given a scheduler that ran (and set the mark), then was down for three hours past a task's time
    scheduler(parts, clock).run_once()
    task_id = schedule_at(tasks, clock, 120)
    clock.advance(3 * 3600)
    # When a new scheduler starts with a one-hour catch-up window
    assert scheduler(parts, clock, catchup_s=3600).run_once() == 1
    # Then the three-hour-old task is still queued: the mark, not the window, decided where to look
    assert store.get(task_id).status is Status.QUEUED
    assert registry.mark(MARK) is not None


def test_replicas_share_the_mark_and_promote_each_task_once(parts: tuple, clock: FixedClock) -> None:
    tasks, _, queue, registry = parts
    ids = [schedule_at(tasks, clock, 30) for _ in range(20)]
    first, second = scheduler(parts, clock), scheduler(parts, clock)
    clock.advance(31)
    assert first.run_once() + second.run_once() == 20
    assert sorted(t.id for t in queue.sent) == sorted(ids)
    clock.advance(180)
    first.run_once()
    assert registry.mark(MARK) == (clock.now() - timedelta(minutes=1)).replace(second=0, microsecond=0)


def test_a_due_task_past_its_expiry_is_expired_not_queued(parts: tuple, clock: FixedClock) -> None:
    tasks, store, queue, _ = parts
    expires = (clock.now() + timedelta(seconds=60)).isoformat()
    task_id = schedule_at(tasks, clock, 30, expires_at=expires)
    sched = scheduler(parts, clock)
    sched.run_once()
    clock.advance(120)  # the scheduler was away when the task was due and its expiry passed
    assert sched.run_once() == 0
    task = store.get(task_id)
    assert task.status is Status.EXPIRED
    assert store.events(task_id)[-1].type is EventType.EXPIRED
    assert queue.sent == []


def test_due_work_that_lands_behind_the_mark_is_found_by_the_periodic_sweep(parts: tuple, clock: FixedClock) -> None:
    tasks, store, _, _ = parts
    sched = scheduler(parts, clock)
    sched.run_once()
    clock.advance(600)
    sched.run_once()  # the mark is now ~9 minutes past the start
    # Given a task that became due in a bucket the scheduler has already drained (e.g. a lagging index)
    task_id = schedule_at(tasks, clock, 30)
    task = store.get(task_id)
    task.next_run_at = task.updated_at = clock.now() - timedelta(minutes=5)
    store._tasks[task_id] = task  # place it in an old bucket, as a late index write would
    clock.advance(1)
    assert sched.run_once() == 0  # the regular pass only walks from the mark
    clock.advance(60)
    assert sched.run_once() == 1  # the minute's sweep walks 15 minutes back
    assert store.get(task_id).status is Status.QUEUED
