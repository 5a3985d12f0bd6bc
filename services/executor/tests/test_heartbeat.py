"""Heartbeats over the in-memory fakes: extend, notice a lost lease, tell claims of one task apart."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from tq_executor.heartbeat import Heartbeat
from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Status
from tqcore.execution import Attempts
from tqcore.recovery import reclaim_expired_leases
from tqcore.service import Catalog, Tasks
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))


@pytest.fixture
def env() -> tuple[Tasks, InMemoryTaskStore, RecordingQueue, FixedClock, Attempts]:
    store, queue, clock = InMemoryTaskStore(), RecordingQueue(), FixedClock()
    ids = (f"t-{n}" for n in itertools.count(1))
    tasks = Tasks(store, queue, Catalog(InMemoryRegistry(["echo"])), clock, lambda: next(ids))
    return tasks, store, queue, clock, Attempts(store, queue, clock, worker="h:1", lease_s=30, jitter=lambda: 0.0)


def test_a_beat_extends_the_lease_and_a_lost_lease_stops_the_attempt(env: tuple) -> None:
    tasks, store, queue, clock, attempts = env
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a", retry={"backoff_base_s": 0.1}), ALICE).task.id
    claimed = attempts.claim(Dispatch.of(store.get(task_id)))
    assert claimed is not None
    beat = Heartbeat(attempts, interval_s=10, lease_s=30)
    active = beat.track(claimed, None)
    clock.advance(10)
    beat.beat()
    assert store.get(task_id).lease_expires_at == clock.now() + timedelta(seconds=30)
    assert not active.stop.is_set()
    # When the lease runs out anyway (a stall) and the reaper reclaims it
    clock.advance(31)
    assert reclaim_expired_leases(store, queue, clock, shards=4) == 1
    # Then the next beat stops the attempt
    beat.beat()
    assert active.stop.is_set()


def test_a_new_claim_of_the_same_task_is_tracked_apart_from_the_old_one(env: tuple) -> None:
    tasks, store, queue, clock, attempts = env
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a", retry={"backoff_base_s": 0.1}), ALICE).task.id
    first = attempts.claim(Dispatch.of(store.get(task_id)))
    assert first is not None
    beat = Heartbeat(attempts, interval_s=10, lease_s=30)
    old = beat.track(first, None)
    clock.advance(31)
    reclaim_expired_leases(store, queue, clock, shards=4)
    clock.advance(1)
    retried = store.get(task_id)
    retried.promote(clock.now())
    store.commit(retried)
    second = attempts.claim(Dispatch.of(store.get(task_id)))
    assert second is not None
    new = beat.track(second, None)
    # When the old attempt ends, the new one stays tracked and keeps its lease alive
    beat.untrack(old)
    clock.advance(20)
    beat.beat()
    assert not new.stop.is_set()
    assert store.get(task_id).lease_expires_at == clock.now() + timedelta(seconds=30)
    assert store.get(task_id).status is Status.RUNNING
