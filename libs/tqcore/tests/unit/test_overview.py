"""The overview use case over the in-memory fakes: queues and pools, live instances, throughput, scheduler lag, dead
letters per group of the caller."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tqcore.activity import WINDOW_MINUTES, Activity
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo, Priority, Status
from tqcore.domain.task import Task
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskQueries, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.overview import LAG_MINUTES, SystemOverview, age_s
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
BOB = Principal("bob", frozenset({"team-b"}))
ADMIN = Principal("admin", frozenset(), admin=True)


class Env:
    """The fakes an overview reads, at a fixed time, with a hand-moved monotonic clock for its cache."""

    def __init__(self) -> None:
        self.clock = FixedClock()
        self.store = InMemoryTaskStore()
        self.queries = InMemoryTaskQueries(self.store)
        self.queue = RecordingQueue()
        self.registry = InMemoryRegistry()
        self.ticks = 0.0
        self.groups = ["team-a", "team-b"]
        self.overview = SystemOverview(
            self.queue,
            self.queries,
            self.registry,
            self.clock,
            pools=lambda: ["default", "media"],
            every_group=lambda: self.groups,
            cache_s=5.0,
            ticks=lambda: self.ticks,
        )
        self.minute = int(self.clock.now().timestamp() // 60)

    def submit(self, group: str = "team-a", pool: str = "default", priority: str = "normal", ago_s: float = 0) -> Task:
        cmd = SubmitTask.model_validate(
            {"type": "echo", "group": group, "priority": priority, "retry": {"max_retries": 0}}
        )
        at = self.clock.now() - timedelta(seconds=ago_s)
        task = Task.submit(task_id=f"t-{len(self.store._tasks)}", owner="u", now=at, submitted={}, **cmd.task_fields())
        task.pool = pool
        self.store.create(task)
        self.queue.send(task)
        return task.committed()

    def dead_letter(self, group: str) -> None:
        task = self.submit(group)
        task = mutate(self.store, task, lambda t: t.claim(1, "host:1", self.clock.now(), 30))
        task = mutate(
            self.store, task, lambda t: t.fail(1, "host:1", ErrorInfo("E", "x"), self.clock.now(), jitter=0.0)
        )
        assert task.status is Status.FAILED

    def activity(self, minutes_ago: int = 0, **series: tuple[float, ...]) -> Activity:
        """An activity whose series end ``minutes_ago`` minutes before now."""
        return Activity(minute=self.minute - minutes_ago, **series)  # type: ignore[arg-type]


@pytest.fixture
def env() -> Env:
    return Env()


def test_queues_come_pool_by_pool_with_depths_and_the_age_of_their_longest_waiting_task(env: Env) -> None:
    # Given queued tasks in two pools, the oldest default/normal one queued 90 s ago, a media/high one 10 s ago
    env.submit(ago_s=90)
    env.submit(ago_s=30)
    env.submit(pool="media", priority="high", ago_s=10)
    # When alice reads the overview
    seen = env.overview.read(ALICE)
    # Then each pool lists its three queues with the fakes' depths and the oldest task's age
    assert [pool.name for pool in seen.pools] == ["default", "media"]
    default = {q.priority: q for q in seen.pools[0].queues}
    media = {q.priority: q for q in seen.pools[1].queues}
    assert set(default) == set(Priority)
    assert (default[Priority.NORMAL].depth, age_s(default[Priority.NORMAL].oldest_queued_at, seen.at)) == (2, 90.0)
    assert (media[Priority.HIGH].depth, age_s(media[Priority.HIGH].oldest_queued_at, seen.at)) == (1, 10.0)
    assert default[Priority.HIGH].oldest_queued_at is None
    assert age_s(None, seen.at) is None


def test_executors_count_per_pool_they_report_and_every_service_counts_its_replicas(env: Env) -> None:
    # Given two executors of the default pool, one of a pool no type is registered in yet, one that reports no pool
    # (an older executor), a scheduler, and a gateway whose heartbeat carries nothing
    env.registry.heartbeat("executor", "h:1", 30, env.activity(pool="default"))
    env.registry.heartbeat("executor", "h:2", 30, env.activity(pool="default"))
    env.registry.heartbeat("executor", "h:3", 30, env.activity(pool="gpu"))
    env.registry.heartbeat("executor", "h:4", 30)
    env.registry.heartbeat("scheduler", "h:5", 30, env.activity(pass_at=env.clock.now().timestamp()))
    env.registry.heartbeat("gateway", "h:6", 30)
    # When the overview is read
    seen = env.overview.read(ALICE)
    # Then the pools are the catalog's then the executors' own, each with its executors; every executor counts
    assert [(pool.name, pool.executors) for pool in seen.pools] == [("default", 2), ("media", 0), ("gpu", 1)]
    assert [q.name for q in seen.pools[2].queues] == [env.queue.depths(["gpu"])[i].name for i in range(3)]
    assert seen.replicas == {"gateway": 1, "executor": 4, "scheduler": 1, "reaper": 0}


def test_throughput_sums_every_live_instance_minute_by_minute(env: Env) -> None:
    # Given an executor whose last beat was a minute ago (its window ends a minute earlier) and one beating now,
    # and a reaper that failed a lost attempt 3 minutes ago
    env.registry.heartbeat("executor", "h:1", 30, env.activity(1, succeeded=(4, 5), failed=(0, 1)))
    env.registry.heartbeat("executor", "h:2", 30, env.activity(0, succeeded=(2, 7, 1)))
    env.registry.heartbeat("reaper", "h:3", 30, env.activity(0, failed=(1, 0, 0, 0)))
    # When the overview is read
    seen = env.overview.read(ALICE)
    # Then the window's minutes line up by clock minute, oldest first, the last the minute under way
    assert len(seen.minutes) == WINDOW_MINUTES
    assert seen.minutes[-1].start <= seen.at < seen.minutes[-1].start + timedelta(minutes=1)
    assert [(m.succeeded, m.failed) for m in seen.minutes[-4:]] == [(0, 1), (6, 0), (12, 1), (1, 0)]
    assert sum(m.succeeded for m in seen.minutes[:-4]) == 0


def test_scheduler_lag_is_the_latest_fired_slots_and_the_stalest_replica_says_when_it_last_passed(env: Env) -> None:
    # Given two schedulers: one fired slots up to 2.5 s late two minutes ago and on time now; one fired 9 s late
    # three minutes ago and last finished a pass 40 s ago
    now = env.clock.now().timestamp()
    env.registry.heartbeat("scheduler", "h:1", 30, env.activity(fired=(3, 0, 2), lag_s=(2.5, 0.0, 0.1), pass_at=now))
    env.registry.heartbeat("scheduler", "h:2", 30, env.activity(3, fired=(1,), lag_s=(9.0,), pass_at=now - 40))
    # When the overview is read
    seen = env.overview.read(ALICE)
    # Then the lag is the latest minute that fired anything (its latest slot), and the last pass the stalest one
    assert seen.scheduler.lag_s == 0.1
    assert seen.scheduler.last_pass_at is not None
    assert age_s(seen.scheduler.last_pass_at, seen.at) == 40.0
    assert [m.fired for m in seen.minutes[-4:]] == [1, 3, 0, 2]


def test_no_slot_fired_lately_means_no_lag_to_show_and_no_scheduler_no_last_pass(env: Env) -> None:
    env.registry.heartbeat("scheduler", "h:1", 30, env.activity(LAG_MINUTES, fired=(5,), lag_s=(30.0,)))
    seen = env.overview.read(ALICE)
    assert (seen.scheduler.lag_s, seen.scheduler.last_pass_at) == (None, None)


def test_dead_letters_are_counted_for_the_callers_groups_only_and_an_admins_span_every_group(env: Env) -> None:
    # Given dead letters in team-a (2) and team-b (1)
    env.dead_letter("team-a")
    env.dead_letter("team-a")
    env.dead_letter("team-b")
    # When alice, bob and an admin read the overview
    # Then each sees only their groups' counts; the admin every group's
    assert env.overview.read(ALICE).dead_letters == {"team-a": 2}
    assert env.overview.read(BOB).dead_letters == {"team-b": 1}
    assert env.overview.read(ADMIN).dead_letters == {"team-a": 2, "team-b": 1}


def test_a_read_is_reused_for_cache_s_then_read_again(env: Env) -> None:
    # Given an overview read once
    env.registry.heartbeat("executor", "h:1", 30, env.activity(pool="default"))
    env.dead_letter("team-a")
    assert env.overview.read(ALICE).replicas["executor"] == 1
    # When things change within cache_s, then after it
    env.registry.heartbeat("executor", "h:2", 30, env.activity(pool="default"))
    env.dead_letter("team-a")
    env.ticks += 4.9
    cached = env.overview.read(ALICE)
    env.ticks += 0.2
    fresh = env.overview.read(ALICE)
    # Then the first read within cache_s is the cached one, the next sees the change
    assert (cached.replicas["executor"], cached.dead_letters) == (1, {"team-a": 1})
    assert (fresh.replicas["executor"], fresh.dead_letters) == (2, {"team-a": 2})
    assert fresh.at == datetime.fromtimestamp(env.clock.now().timestamp(), fresh.at.tzinfo)
