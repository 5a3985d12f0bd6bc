"""The scheduler never abandons a due task: failed commits are retried, the mark waits, the sweep finds any age."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tq_scheduler.scheduler import MARK, Scheduler
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import EventType, Status
from tqcore.domain.task import Task
from tqcore.errors import StoreUnavailable
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))


class FailingCommits(InMemoryTaskStore):
    """The in-memory store whose commits of chosen tasks fail as the DynamoDB adapter's do in an outage."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: dict[str, float] = {}
        self.tries: dict[str, int] = {}

    def fail(self, task_id: str, times: float = float("inf")) -> None:
        """Refuse the task's next ``times`` commits."""
        self.failing[task_id] = times

    def commit(self, task: Task, *, lease_expired_before: datetime | None = None) -> None:
        self.tries[task.id] = self.tries.get(task.id, 0) + 1
        if self.failing.get(task.id, 0) > 0:
            self.failing[task.id] -= 1
            raise StoreUnavailable("DynamoDB is unavailable (fake)")
        super().commit(task, lease_expired_before=lease_expired_before)


class World:
    """A fixed clock, the failing store, a recording queue, the API's use cases and the schedulers started."""

    def __init__(self) -> None:
        self.clock = FixedClock()
        self.store = FailingCommits()
        self.queue = RecordingQueue()
        self.registry = InMemoryRegistry(["echo"])
        ids = (f"t-{n}" for n in itertools.count(1))
        self.tasks = Tasks(self.store, self.queue, Catalog(self.registry), self.clock, lambda: next(ids))
        self.schedulers: list[Scheduler] = []

    def scheduler(self) -> Scheduler:
        """A scheduler process (closed with the fixture)."""
        sched = Scheduler(self.store, self.queue, self.registry, self.clock, catchup_s=3600)
        self.schedulers.append(sched)
        return sched

    def at(self, in_s: float, **extra: Any) -> str:
        """Submit a task due ``in_s`` seconds from now; its id."""
        body = {"type": "echo", "group": "team-a", "schedule": {"at": self.later(in_s).isoformat()}, **extra}
        return self.tasks.submit(SubmitTask.model_validate(body), ALICE).task.id

    def later(self, in_s: float) -> datetime:
        """``in_s`` seconds from now."""
        return self.clock.now() + timedelta(seconds=in_s)

    def status(self, task_id: str) -> Status:
        """The stored task's status."""
        return self.store.get(task_id).status


@pytest.fixture
def world() -> Iterator[World]:
    made = World()
    yield made
    for sched in made.schedulers:
        sched.close()


def commit_failures() -> float:
    return REGISTRY.get_sample_value("tq_scheduler_commit_failures_total") or 0.0


def test_a_commit_that_fails_twice_is_retried_within_the_same_pass(world: World) -> None:
    # Given five tasks due at the same time, and a store that refuses one task's first two commits
    ids = [world.at(30) for _ in range(5)]
    world.store.fail(ids[2], times=2)
    sched = world.scheduler()
    world.clock.advance(31)
    # When one pass runs
    queued = sched.run_once()
    # Then all five are queued by that pass: the failed commit was tried again after a pause, not left behind
    assert queued == 5
    assert world.store.tries[ids[2]] == 3
    assert sorted(t.id for t in world.queue.sent) == sorted(ids)


def test_a_task_that_keeps_failing_holds_the_mark_but_not_the_other_tasks(world: World) -> None:
    before, start = commit_failures(), world.clock.now()
    # Given a task whose commits always fail, due with others, and more tasks due later
    stuck = world.at(30)
    world.store.fail(stuck)
    together = [world.at(30) for _ in range(3)]
    later = world.at(300)
    sched = world.scheduler()
    world.clock.advance(31)
    # When passes run for ten minutes
    assert sched.run_once() == 3
    assert world.status(stuck) is Status.SCHEDULED
    for _ in range(10):
        world.clock.advance(60)
        sched.run_once()
    # Then every other task was queued on time (the later one on the pass at its time)
    assert all(world.status(i) is Status.QUEUED for i in [*together, later])
    assert world.store.get(later).queued_at == start + timedelta(seconds=331)  # the first pass at or after 300 s
    # and the failing task is never passed by the mark, and is counted at each pass
    mark = world.registry.mark(MARK)
    assert mark is not None
    assert mark <= world.store.get(stuck).next_run_at  # type: ignore[operator]
    assert commit_failures() - before == 11
    # When the store takes its commits again, the next pass queues it and the mark moves on
    world.store.failing.clear()
    world.clock.advance(1)
    assert sched.run_once() == 1
    assert world.status(stuck) is Status.QUEUED
    world.clock.advance(60)
    sched.run_once()
    assert world.registry.mark(MARK) > world.later(-120)  # type: ignore[operator]


def test_a_task_due_two_days_ago_whose_commits_failed_is_still_run(world: World) -> None:
    # Given a task whose commits failed for the twenty minutes after its time, while the scheduler went on
    stuck = world.at(30)
    world.store.fail(stuck)
    sched = world.scheduler()
    for step_s in (31, 600, 600):
        world.clock.advance(step_s)
        sched.run_once()
    sched.close()
    # and a replica that never saw it failing moved the shared mark on, then everything was down for two days
    world.registry.advance_mark(MARK, world.later(-60))
    world.clock.advance(2 * 86400)
    world.store.failing.clear()
    # When a scheduler starts again
    assert world.scheduler().run_once() == 1
    # Then the task is queued: the sweep found it two days late, far behind the mark and any bucket walked
    assert world.status(stuck) is Status.QUEUED
    queued = [e for e in world.store.events(stuck) if e.type is EventType.QUEUED]
    assert len(queued) == 1
    assert [t.id for t in world.queue.sent] == [stuck]


def test_a_repeating_task_found_days_late_by_the_sweep_runs_once_for_its_latest_slot(world: World) -> None:
    # Given an hourly task whose commits failed for twenty minutes from its first slot
    schedule = {"every_s": 3600, "start_at": world.later(30).isoformat()}
    hourly = world.tasks.submit(
        SubmitTask.model_validate({"type": "echo", "group": "team-a", "schedule": schedule}), ALICE
    ).task.id
    world.store.fail(hourly)
    sched = world.scheduler()
    for step_s in (31, 600, 600):
        world.clock.advance(step_s)
        sched.run_once()
    world.registry.advance_mark(MARK, world.later(-60))
    # When the store heals two days later
    world.clock.advance(2 * 86400)
    world.store.failing.clear()
    world.scheduler().run_once()
    # Then it runs once, for its latest missed slot (within TQ_STARTING_DEADLINE_S), the others recorded skipped
    queued = [e for e in world.store.events(hourly) if e.type is EventType.QUEUED]
    assert len(queued) == 1
    assert world.later(-3600) < queued[0].data["scheduled_for"] <= world.clock.now()
    skipped = [e for e in world.store.events(hourly) if e.type is EventType.RUN_SKIPPED]
    assert [e.data["reason"] for e in skipped] == ["catch_up"]


def test_a_backfill_is_stepped_once_per_pass_until_done_and_a_failing_step_never_stops_a_pass(world: World) -> None:
    # Given a backfill whose first step fails, whose second has more to do and whose third finishes
    outcomes: list[bool | Exception] = [StoreUnavailable("DynamoDB is unavailable (fake)"), False, True]
    steps = 0

    def backfill() -> bool:
        nonlocal steps
        steps += 1
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    sched = Scheduler(world.store, world.queue, world.registry, world.clock, catchup_s=3600, backfill=backfill)
    world.schedulers.append(sched)
    due = world.at(30)
    world.clock.advance(31)
    # When the first pass meets the failing step, Then it still queues the due task
    assert sched.run_once() == 1
    assert world.status(due) is Status.QUEUED
    # And the backfill is stepped at each pass until it is done, then never again
    for _ in range(4):
        world.clock.advance(1)
        sched.run_once()
    assert steps == 3
