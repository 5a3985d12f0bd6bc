"""Seed 002's questions on the in-memory fakes, with the default timings (docs/ARCHITECTURE.md, last section)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import LeaseHeld
from tqcore.domain.model import EventType, RunStatus, Status
from tqcore.domain.task import Task
from tqcore.errors import StoreUnavailable
from tqcore.ports import LeaseRecord, LeaseState
from tqcore.settings import CoreSettings
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.recovery import reclaim_expired_leases
from tqcore.usecases.scheduling import promote_due
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

#: The defaults the question is about, read from the settings so the test breaks if they change.
DEFAULTS = CoreSettings()
LEASE_S = DEFAULTS.lease_s  # 30
HEARTBEAT_S = 10  # TQ_HEARTBEAT_S
REAPER_INTERVAL_S = 5  # TQ_REAPER_INTERVAL_S
ALICE = Principal("alice", frozenset({"team-a"}))


class ThrottledStore(InMemoryTaskStore):
    """The in-memory store that, while ``down``, refuses every call as DynamoDB's adapter does when throttled."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise StoreUnavailable("DynamoDB is unavailable: throttled (fake)")

    def get(self, task_id: str) -> Task:
        self._check()
        return super().get(task_id)

    def commit(self, task: Task, *, lease_expired_before: datetime | None = None) -> None:
        self._check()
        super().commit(task, lease_expired_before=lease_expired_before)

    def lease_expired(self, now: datetime) -> Iterator[LeaseRecord]:
        self._check()
        return super().lease_expired(now)

    def due(self, since: datetime, until: datetime, *, part: tuple[int, int] = (0, 1)) -> Iterator[Task]:
        self._check()
        return super().due(since, until, part=part)


class World:
    """One executor, a reaper and a scheduler over the fakes, on one fixed clock."""

    def __init__(self) -> None:
        self.clock = FixedClock()
        self.store = ThrottledStore()
        self.queue = RecordingQueue()
        ids = iter(f"t-{n}" for n in range(1, 100))
        self.tasks = Tasks(self.store, self.queue, Catalog(InMemoryRegistry(["echo"])), self.clock, lambda: next(ids))

    def executor(self, worker: str) -> Attempts:
        # jitter 0: the full nominal backoff (2 s for the first retry); 0.999 would make it about 1 s.
        return Attempts(self.store, self.queue, self.clock, worker=worker, lease_s=LEASE_S, jitter=lambda: 0.0)

    def reaper_pass(self) -> int:
        return reclaim_expired_leases(self.store, self.queue, self.clock, jitter=lambda: 0.0)

    def scheduler_pass(self) -> int:
        since = self.clock.now().replace(second=0, microsecond=0)
        return promote_due(self.store, self.queue, self.clock, since=since)

    def submit(self) -> Dispatch:
        task = self.tasks.submit(SubmitTask(type="echo", group="team-a", payload={}), ALICE).task
        return Dispatch.of(task)

    def leases_of(self, task_id: str) -> list[int]:
        """Claim tokens of every lease item the task still has (looked up as of far in the future)."""
        later = self.clock.now() + timedelta(days=1)
        return [lease.claim_seq for lease in self.store.lease_expired(later) if lease.task_id == task_id]

    def event_types(self, task_id: str) -> list[str]:
        return [event.type.value for event in self.store.events(task_id)]


def at(claimed: datetime, seconds: float) -> datetime:
    return claimed + timedelta(seconds=seconds)


def test_b_a_worker_crashing_10_s_after_its_claim() -> None:
    world = World()
    dispatch = world.submit()
    worker = world.executor("host-a:101")
    # Given a worker that claims the task at T
    claimed = worker.claim(dispatch)
    assert claimed is not None
    t0 = world.clock.now()
    assert (claimed.status, claimed.lease_expires_at) == (Status.RUNNING, at(t0, LEASE_S))
    assert world.leases_of(claimed.id) == [claimed.claim_seq]
    # When it crashes at T+10 s, before its first heartbeat lands (so nothing more is written for it)
    world.clock.advance(10)

    # Then at T+30 s the lease expires exactly now, and "expired" means expires_at < now: a reaper pass
    # at that instant reclaims nothing and the task is still running, held by the dead worker
    world.clock.advance(20)
    assert world.reaper_pass() == 0
    at_30 = world.store.get(claimed.id)
    assert (at_30.status, at_30.version, at_30.worker, at_30.attempts) == (Status.RUNNING, 3, "host-a:101", 1)
    assert world.leases_of(claimed.id) == [claimed.claim_seq]
    # and SQS's redelivery of the same message (visibility = lease = 30 s) is not claimed by another executor
    assert world.executor("host-b:202").claim(dispatch) is None
    assert world.event_types(claimed.id) == ["submitted", "queued", "claimed"]

    # When the next reaper pass runs at T+35 s
    world.clock.advance(REAPER_INTERVAL_S)
    assert world.reaper_pass() == 1
    # Then the attempt is lost and the task is retrying after the first backoff (2 s nominal, no jitter)
    at_35 = world.store.get(claimed.id)
    assert (at_35.status, at_35.version, at_35.attempts) == (Status.RETRYING, 6, 1)
    assert (at_35.worker, at_35.lease_expires_at, at_35.claim_seq) == (None, None, None)
    assert at_35.next_run_at == at(t0, 35 + 2)
    assert at_35.last_error is not None
    assert at_35.last_error.type == "LeaseExpired"
    events = world.store.events(claimed.id)
    assert [e.type.value for e in events] == [
        "submitted",
        "queued",
        "claimed",
        "lease_expired",
        "failed",
        "retry_scheduled",
    ]
    assert all(e.actor == "reaper" and e.at == at(t0, 35) for e in events[3:])
    failed = events[4].data
    assert (failed["attempt"], failed["run_status"], failed["error"]["type"]) == (1, RunStatus.LOST, "LeaseExpired")
    assert failed["duration_ms"] == 35_000
    assert events[5].data["delay_s"] == 2.0
    # and the lease item is gone with that same commit
    assert world.leases_of(claimed.id) == []
    # and a second reaper pass (or a second reaper) changes nothing
    assert world.reaper_pass() == 0
    assert world.store.get(claimed.id).version == at_35.version

    # When the scheduler runs before the backoff has passed, nothing happens; after it, attempt 2 is queued
    world.clock.advance(1.5)
    assert world.scheduler_pass() == 0
    world.clock.advance(1)  # T+37.5 s: the first scheduler pass (every 1 s) after T+37 s
    assert world.scheduler_pass() == 1
    requeued = world.store.get(claimed.id)
    assert (requeued.status, Dispatch.of(requeued).attempt) == (Status.QUEUED, 2)
    assert [(t.id, Dispatch.of(t).attempt) for t in world.queue.sent[-1:]] == [(claimed.id, 2)]
    # and the old message (attempt 1) can never run again
    assert world.executor("host-b:202").claim(dispatch) is None


def test_b_a_heartbeat_at_10_s_keeps_the_reaper_away_at_35_s() -> None:
    world = World()
    dispatch = world.submit()
    worker = world.executor("host-a:101")
    claimed = worker.claim(dispatch)
    assert claimed is not None
    t0 = world.clock.now()
    # Given the worker HAD heartbeated at T+10 s (lease now until T+40 s) and crashed right after
    world.clock.advance(HEARTBEAT_S)
    assert worker.heartbeat(claimed) is LeaseState.HELD
    assert world.store.get(claimed.id).lease_expires_at == at(t0, 40)
    # When the reaper passes at T+35 s and T+40 s, Then nothing is reclaimed: the lease is still good
    world.clock.advance(25)
    assert world.reaper_pass() == 0
    world.clock.advance(5)
    assert world.reaper_pass() == 0
    still = world.store.get(claimed.id)
    assert (still.status, still.worker, still.version) == (Status.RUNNING, "host-a:101", claimed.version)
    assert world.event_types(claimed.id) == ["submitted", "queued", "claimed"]
    # and the pass after the extended lease ran out (T+45 s) reclaims it
    world.clock.advance(REAPER_INTERVAL_S)
    assert world.reaper_pass() == 1
    assert world.store.get(claimed.id).status is Status.RETRYING


def test_b_the_reclaim_at_35_s_loses_to_a_heartbeat_that_lands_first() -> None:
    world = World()
    dispatch = world.submit()
    worker = world.executor("host-a:101")
    claimed = worker.claim(dispatch)
    assert claimed is not None
    # Given a worker that was only slow: the reaper read its expired lease at T+35 s ...
    world.clock.advance(35)
    stale_view: Task = world.store.get(claimed.id)
    # ... and its heartbeat landed before the reaper's commit
    assert worker.heartbeat(claimed) is LeaseState.HELD
    stale_view.expire_lease(world.clock.now(), jitter=0.0)
    # When the reaper commits, Then its conditional commit is refused and the attempt keeps running
    with pytest.raises(LeaseHeld):
        world.store.commit(stale_view, lease_expired_before=world.clock.now())
    assert world.store.get(claimed.id).status is Status.RUNNING
    assert EventType.LEASE_EXPIRED.value not in world.event_types(claimed.id)


def test_d_a_reaper_or_scheduler_pass_that_meets_a_throttle_is_done_again_next_interval() -> None:
    world = World()
    claimed = world.executor("host-a:101").claim(world.submit())
    assert claimed is not None
    # Given a lease that ran out 5 s ago, When the reaper's pass meets a throttled store
    world.clock.advance(35)
    world.store.down = True
    with pytest.raises(StoreUnavailable):
        world.reaper_pass()  # tqcore.loop.run_every logs it and runs the next pass an interval later
    # Then nothing changed: the lease is still there to be found
    world.store.down = False
    assert world.store.get(claimed.id).status is Status.RUNNING
    assert world.leases_of(claimed.id) == [claimed.claim_seq]
    # and the next pass, once the throttle has passed, reclaims it
    world.clock.advance(REAPER_INTERVAL_S)
    assert world.reaper_pass() == 1
    # When the scheduler's pass meets the throttle after the backoff, Then the task waits, still retrying
    world.clock.advance(2.5)
    world.store.down = True
    with pytest.raises(StoreUnavailable):
        world.scheduler_pass()
    world.store.down = False
    assert world.store.get(claimed.id).status is Status.RETRYING
    # and the next scheduler pass (1 s later) queues attempt 2: nothing was lost
    world.clock.advance(1)
    assert world.scheduler_pass() == 1
    assert world.store.get(claimed.id).status is Status.QUEUED
