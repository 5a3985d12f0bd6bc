"""Heartbeats over the in-memory fakes: extend, notice a lost lease, tell claims of one task apart, never wait on
another attempt's slow beat, stop an attempt before its unextended lease lapses."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import wait
from datetime import datetime, timedelta

import pytest

from tq_executor.heartbeat import Active, Heartbeat
from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Status
from tqcore.domain.task import Task
from tqcore.errors import StoreUnavailable
from tqcore.ports import LeaseState
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.recovery import reclaim_expired_leases
from tqcore.usecases.service import Catalog, Tasks

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
    assert reclaim_expired_leases(store, queue, clock) == 1
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
    reclaim_expired_leases(store, queue, clock)
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


class SlowLeases(InMemoryTaskStore):
    """A store whose lease extensions for one task hang until let go: a slow AWS call."""

    def __init__(self) -> None:
        super().__init__()
        self.slow_task = ""
        self.entered = threading.Event()
        self.let_go = threading.Event()
        self.refuse = False

    def extend_lease(self, task_id: str, claim_seq: int, until: datetime) -> LeaseState:
        if self.refuse:
            raise StoreUnavailable("the store is unavailable")
        if task_id == self.slow_task:
            self.entered.set()
            self.let_go.wait(10)
        return super().extend_lease(task_id, claim_seq, until)


@pytest.fixture
def slow() -> Iterator[tuple[Tasks, SlowLeases, FixedClock, Attempts]]:
    store, queue, clock = SlowLeases(), RecordingQueue(), FixedClock()
    ids = (f"t-{n}" for n in itertools.count(1))
    tasks = Tasks(store, queue, Catalog(InMemoryRegistry(["echo"])), clock, lambda: next(ids))
    yield tasks, store, clock, Attempts(store, queue, clock, worker="h:1", lease_s=30, jitter=lambda: 0.0)
    store.let_go.set()


def _claim(tasks: Tasks, store: InMemoryTaskStore, attempts: Attempts) -> Task:
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a"), ALICE).task.id
    claimed = attempts.claim(Dispatch.of(store.get(task_id)))
    assert claimed is not None
    return claimed


def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@contextlib.contextmanager
def stuck_beside_healthy(slow: tuple) -> Iterator[tuple[Active, Active, Task]]:
    """Two attempts claimed now (leases until now + 30 s) under a running heartbeat, whose beats came due 10 s
    later; the first one's lease extension hangs: (its attempt, the healthy one, the healthy task)."""
    tasks, store, clock, attempts = slow
    stuck, healthy = _claim(tasks, store, attempts), _claim(tasks, store, attempts)
    store.slow_task = stuck.id
    beat = Heartbeat(attempts, interval_s=0.2, lease_s=30)
    doomed, kept = beat.track(stuck, None), beat.track(healthy, None)
    beat.start()
    try:
        clock.advance(10)
        assert store.entered.wait(5)
        yield doomed, kept, healthy
    finally:
        store.let_go.set()
        beat.stop()


def test_one_slow_beat_does_not_hold_back_the_other_attempts_beats(slow: tuple) -> None:
    _, store, clock, _ = slow
    # Given two running attempts whose beats are due, the first one's call hanging
    with stuck_beside_healthy(slow) as (_, kept, healthy):
        # Then the other attempt's lease is extended all the same
        assert _within(3, lambda: store.get(healthy.id).lease_expires_at == clock.now() + timedelta(seconds=30))
        assert not kept.stop.is_set()


def test_an_attempt_whose_lease_was_not_extended_stops_before_the_lease_lapses(slow: tuple) -> None:
    _, store, clock, _ = slow
    # Given an attempt whose lease extension hangs, beside a healthy one
    with stuck_beside_healthy(slow) as (doomed, kept, _):
        # When the lease's end is still more than the margin away, the attempt runs on
        clock.advance(17)  # 3 s left
        time.sleep(0.5)
        assert not doomed.stop.is_set()
        # Then, once it is within the margin (2 s) of lapsing, it is stopped while the call still hangs
        clock.advance(1.5)  # 1.5 s left
        assert _within(2, doomed.stop.is_set)
        assert store.get(doomed.task.id).lease_expires_at > clock.now()  # before the lease lapsed
        assert not kept.stop.is_set()


def test_a_beat_is_due_an_interval_after_the_claim_and_a_failed_one_is_tried_again_sooner(slow: tuple) -> None:
    tasks, store, clock, attempts = slow
    claimed = _claim(tasks, store, attempts)
    beat = Heartbeat(attempts, interval_s=10, lease_s=30)
    beat.track(claimed, None)
    # A task shorter than the interval costs no beat
    clock.advance(9.9)
    assert beat.tick() == []
    clock.advance(0.1)
    wait(beat.tick())
    assert store.get(claimed.id).lease_expires_at == clock.now() + timedelta(seconds=30)
    # The next is due an interval after this one
    clock.advance(9.9)
    assert beat.tick() == []
    # A beat that fails (the store unavailable) is tried again after half an interval
    clock.advance(0.1)
    store.refuse = True
    assert len(wait(beat.tick()).done) == 1
    clock.advance(4.9)
    assert beat.tick() == []
    store.refuse = False
    clock.advance(0.1)
    wait(beat.tick())
    assert store.get(claimed.id).lease_expires_at == clock.now() + timedelta(seconds=30)
    beat.stop()
