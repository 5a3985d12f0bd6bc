"""The application services (submit, get, re-send, promote, claim and outcomes) on the in-memory fakes."""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import (
    Forbidden,
    IdempotencyMismatch,
    IllegalTransition,
    InvalidSchedule,
    TaskNotFound,
    UnknownTaskType,
    VersionConflict,
)
from tqcore.domain.model import ErrorInfo, EventType, Status
from tqcore.domain.task import Task
from tqcore.ports import TypeInfo
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.recovery import resend_stuck
from tqcore.usecases.scheduling import promote_due
from tqcore.usecases.service import MAX_CONFLICT_RETRIES, Catalog, Tasks, mutate

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
BOB = Principal("bob", frozenset({"team-b"}))
CAROL = Principal("carol", frozenset({"team-a", "team-b"}))
ADMIN = Principal("admin", frozenset(), admin=True)
RESEND_AFTER_S = 30
LEASE_S = 20
BOOM = ErrorInfo("ValueError", "boom")


def cmd(**body: Any) -> SubmitTask:
    return SubmitTask.model_validate({"type": "echo", "group": "team-a", **body})


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store() -> InMemoryTaskStore:
    return InMemoryTaskStore(resend_after_s=RESEND_AFTER_S)


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def tasks(store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock) -> Tasks:
    ids = (f"t-{n}" for n in itertools.count(1))
    return Tasks(store, queue, Catalog(InMemoryRegistry(["echo", "sleep"])), clock, lambda: next(ids))


def executor(store: InMemoryTaskStore, clock: FixedClock, worker: str) -> Attempts:
    return Attempts(store, RecordingQueue(), clock, worker=worker, lease_s=LEASE_S, jitter=lambda: 0.0)


def delivered(task: Task) -> Dispatch:
    """The dispatch as an executor receives it: encoded, sent and decoded (a fresh copy per delivery)."""
    return Dispatch.from_dict(json.loads(Dispatch.of(task).encode())["args"][0])


def after(clock: FixedClock, start: datetime) -> Callable[[float], None]:
    """A function that sets the clock to ``start`` plus some seconds."""

    def at(seconds: float) -> None:
        clock.advance((start + timedelta(seconds=seconds) - clock.now()).total_seconds())

    return at


def event_types(store: InMemoryTaskStore, task_id: str) -> list[str]:
    return [e.type.value for e in store.events(task_id)]


def assert_nothing_written(store: InMemoryTaskStore, queue: RecordingQueue) -> None:
    with pytest.raises(TaskNotFound):
        store.get("t-1")
    assert store.events("t-1") == []
    assert queue.sent == []


# ------------------------------------------------------------------------------------------------- submit
def test_submit_stores_a_queued_task_and_sends_it(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue
) -> None:
    submitted = tasks.submit(cmd(payload={"x": 1}), ALICE)
    task = submitted.task
    assert not submitted.replayed
    assert (task.id, task.owner, task.status, task.version, task.payload) == (
        "t-1",
        "alice",
        Status.QUEUED,
        2,
        {"x": 1},
    )
    assert task.pending_events == []
    assert store.get("t-1") == task
    assert event_types(store, "t-1") == ["submitted", "queued"]
    assert [(t.id, t.version, t.status) for t in queue.sent] == [("t-1", 2, Status.QUEUED)]


def test_submit_of_a_future_task_stores_it_scheduled_and_sends_nothing(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock
) -> None:
    task = tasks.submit(cmd(schedule={"at": clock.now() + timedelta(minutes=5)}), ALICE).task
    assert store.get(task.id).status is Status.SCHEDULED
    assert queue.sent == []


def test_submit_into_a_foreign_group_is_forbidden_and_writes_nothing(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue
) -> None:
    with pytest.raises(Forbidden):
        tasks.submit(cmd(idempotency_key="k-1"), BOB)
    assert_nothing_written(store, queue)
    assert store.idempotency_record("team-a", "k-1") is None


def test_an_admin_may_submit_into_any_group(tasks: Tasks) -> None:
    assert tasks.submit(cmd(group="team-z"), ADMIN).task.owner == "admin"


def test_submit_of_an_unknown_type_writes_nothing(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue
) -> None:
    with pytest.raises(UnknownTaskType):
        tasks.submit(cmd(type="no-such-type", idempotency_key="k-1"), ALICE)
    assert_nothing_written(store, queue)
    assert store.idempotency_record("team-a", "k-1") is None


# ------------------------------------------------------------------------------------------- idempotency
def test_replayed_submit_returns_the_same_task_and_runs_nothing_twice(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue
) -> None:
    # Given a submit with an idempotency key
    first = tasks.submit(cmd(idempotency_key="k-1", payload={"a": 1}), ALICE)
    # When the same request comes again (defaults spelled out this time)
    again = tasks.submit(cmd(idempotency_key="k-1", payload={"a": 1}, priority="normal"), ALICE)
    # Then it is the same task, marked replayed, and nothing new was stored or sent
    assert again.replayed
    assert again.task == first.task
    assert len(queue.sent) == 1
    with pytest.raises(TaskNotFound):
        store.get("t-2")
    assert event_types(store, "t-1") == ["submitted", "queued"]


def test_a_replay_returns_the_task_as_it_is_now(tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock) -> None:
    first = tasks.submit(cmd(idempotency_key="k-1"), ALICE).task
    executor(store, clock, "host-a:1").claim(delivered(first))
    assert tasks.submit(cmd(idempotency_key="k-1"), ALICE).task.status is Status.RUNNING


def test_same_key_with_a_different_body_is_a_mismatch(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue
) -> None:
    tasks.submit(cmd(idempotency_key="k-1", payload={"a": 1}), ALICE)
    with pytest.raises(IdempotencyMismatch):
        tasks.submit(cmd(idempotency_key="k-1", payload={"a": 2}), ALICE)
    assert len(queue.sent) == 1
    with pytest.raises(TaskNotFound):
        store.get("t-2")


def test_idempotency_keys_are_scoped_by_group(tasks: Tasks) -> None:
    in_a = tasks.submit(cmd(idempotency_key="k-1"), CAROL)
    in_b = tasks.submit(cmd(idempotency_key="k-1", group="team-b"), CAROL)
    assert not in_b.replayed
    assert in_b.task.id != in_a.task.id


# --------------------------------------------------------------------------------------------------- get
def test_get_hides_tasks_outside_the_callers_groups(tasks: Tasks) -> None:
    task = tasks.submit(cmd(), ALICE).task
    assert tasks.get(task.id, ALICE) == task
    assert tasks.get(task.id, ADMIN) == task
    with pytest.raises(TaskNotFound):
        tasks.get(task.id, BOB)
    with pytest.raises(TaskNotFound):
        tasks.get("no-such-task", ALICE)


# -------------------------------------------------------------------------------- lost enqueue and resend
def test_a_failed_enqueue_still_accepts_the_task_and_the_reaper_resends_it(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock
) -> None:
    # Given the queue is down when the task is submitted
    queue.fail_next = 1
    task = tasks.submit(cmd(), ALICE).task
    # Then the submit succeeded and the task stays queued, unsent
    assert (task.status, store.get(task.id).status, queue.sent) == (Status.QUEUED, Status.QUEUED, [])
    # When the reaper runs before the re-send deadline, nothing is sent
    assert task.queued_at is not None
    at = after(clock, task.queued_at)
    at(RESEND_AFTER_S - 1)
    assert resend_stuck(store, queue, clock) == 0
    at(RESEND_AFTER_S)
    assert resend_stuck(store, queue, clock) == 0  # exactly at the deadline: not yet past it
    # When it runs after the deadline, the task is sent again as a new version
    at(RESEND_AFTER_S + 1)
    assert resend_stuck(store, queue, clock) == 1
    assert [(t.id, t.status, t.resends, t.version) for t in queue.sent] == [(task.id, Status.QUEUED, 1, 3)]
    assert store.get(task.id).resends == 1
    last = store.events(task.id)[-1]
    assert (last.type, last.actor, last.data) == (EventType.QUEUED, "reaper", {"attempt": 1, "resend": 1})
    # And the next re-send waits twice as long (counted from the enqueue)
    assert resend_stuck(store, queue, clock) == 0
    at(2 * RESEND_AFTER_S)
    assert resend_stuck(store, queue, clock) == 0
    at(2 * RESEND_AFTER_S + 1)
    assert resend_stuck(store, queue, clock) == 1
    assert store.get(task.id).resends == 2


def test_a_claimed_task_is_not_resent(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock
) -> None:
    task = tasks.submit(cmd(), ALICE).task
    assert executor(store, clock, "host-a:1").claim(delivered(task)) is not None
    clock.advance(RESEND_AFTER_S + LEASE_S + 5)  # past the re-send and lease deadlines
    assert resend_stuck(store, queue, clock) == 0
    assert len(queue.sent) == 1
    assert store.get(task.id).status is Status.RUNNING


def test_resend_covers_every_unclaimed_task(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock
) -> None:
    queue.fail_next = 12
    ids = {tasks.submit(cmd(), ALICE).task.id for _ in range(12)}
    clock.advance(RESEND_AFTER_S + 1)
    assert resend_stuck(store, queue, clock) == 12
    assert {t.id for t in queue.sent} == ids
    assert queue.batches == [10, 2]  # a pass sends ten at a time, not one call per task


# ----------------------------------------------------------------------------------------------- mutate
def test_mutate_reapplies_a_change_that_lost_the_race(
    tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock
) -> None:
    # Given two writers that read the same version
    task_id = tasks.submit(cmd(), ALICE).task.id
    mine, theirs = store.get(task_id), store.get(task_id)
    # When the other commits first
    mutate(store, theirs, lambda t: t.update({"description": "theirs"}, "bob", clock.now()))
    result = mutate(store, mine, lambda t: t.update({"name": "mine"}, "alice", clock.now()))
    # Then my change is re-applied on top of theirs: both survive, one version each
    assert (result.name, result.description, result.version) == ("mine", "theirs", 4)
    assert result.pending_events == []
    assert store.get(task_id) == result
    assert [(e.seq, e.actor) for e in store.events(task_id)[2:]] == [(3, "bob"), (4, "alice")]


def test_mutate_lets_the_domain_refuse_the_change_on_the_current_task(
    tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock
) -> None:
    task_id = tasks.submit(cmd(), ALICE).task.id
    first, second = store.get(task_id), store.get(task_id)
    mutate(store, first, lambda t: t.claim(1, "host-a:1", clock.now(), LEASE_S))
    with pytest.raises(IllegalTransition):
        mutate(store, second, lambda t: t.claim(1, "host-b:2", clock.now(), LEASE_S))
    assert store.get(task_id).worker == "host-a:1"
    assert event_types(store, task_id).count("claimed") == 1


class AlwaysConflicting(InMemoryTaskStore):
    """A store where somebody else always commits first."""

    commits = 0

    def commit(self, task: Task) -> None:
        self.commits += 1
        raise VersionConflict("lost again", current=copy.deepcopy(task).committed())


def test_mutate_gives_up_after_a_bounded_number_of_conflicts(clock: FixedClock) -> None:
    store = AlwaysConflicting()
    task = Task.submit(task_id="t-1", type="echo", group="team-a", owner="alice", now=clock.now(), submitted={})
    store.create(task)
    with pytest.raises(VersionConflict):
        mutate(store, store.get("t-1"), lambda t: t.update({"name": "x"}, "alice", clock.now()))
    assert store.commits == MAX_CONFLICT_RETRIES


# ------------------------------------------------------------------------------------------------ claims
def test_claim_takes_the_lease_in_one_commit(tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock) -> None:
    task = tasks.submit(cmd(), ALICE).task
    claimed = executor(store, clock, "host-a:1").claim(delivered(task))
    assert claimed is not None
    assert (claimed.status, claimed.attempts, claimed.worker) == (Status.RUNNING, 1, "host-a:1")
    assert claimed.lease_expires_at == clock.now() + timedelta(seconds=LEASE_S)
    assert store.get(task.id) == claimed


def test_claim_of_a_stale_attempt_is_refused(tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock) -> None:
    task = tasks.submit(cmd(), ALICE).task
    stale = Dispatch(task.id, attempt=2, version=task.version, priority=task.priority, task=copy.deepcopy(task))
    assert executor(store, clock, "host-a:1").claim(stale) is None
    assert store.get(task.id) == task


def test_a_second_delivery_of_the_same_dispatch_is_not_claimed(
    tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock
) -> None:
    task = tasks.submit(cmd(), ALICE).task
    first, second = delivered(task), delivered(task)
    assert executor(store, clock, "host-a:1").claim(first) is not None
    assert executor(store, clock, "host-b:2").claim(second) is None
    assert executor(store, clock, "host-a:1").claim(delivered(task)) is None
    assert store.get(task.id).worker == "host-a:1"
    assert event_types(store, task.id) == ["submitted", "queued", "claimed"]


def test_claim_of_a_message_without_the_snapshot_reads_the_store(
    tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock
) -> None:
    task = tasks.submit(cmd(), ALICE).task
    claimed = executor(store, clock, "host-a:1").claim(Dispatch(task.id, 1, task.version, task.priority, None))
    assert claimed is not None
    assert claimed.status is Status.RUNNING


def test_claim_after_the_task_changed_uses_the_current_task(
    tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock
) -> None:
    # Given a message sent before the payload was changed
    task = tasks.submit(cmd(payload={"v": 1}), ALICE).task
    message = delivered(task)
    mutate(store, store.get(task.id), lambda t: t.update({"payload": {"v": 2}}, "alice", clock.now()))
    # When it is claimed, the task that runs is the current one
    claimed = executor(store, clock, "host-a:1").claim(message)
    assert claimed is not None
    assert (claimed.payload, claimed.version) == ({"v": 2}, 4)


def test_claim_of_a_cancelled_or_missing_task_is_dropped(
    tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock
) -> None:
    task = tasks.submit(cmd(), ALICE).task
    mutate(store, store.get(task.id), lambda t: t.request_cancel("alice", clock.now()))
    attempts = executor(store, clock, "host-a:1")
    assert attempts.claim(delivered(task)) is None
    assert store.get(task.id).status is Status.CANCELLED
    assert attempts.claim(Dispatch("no-such-task", 1, 2, task.priority, None)) is None


# ---------------------------------------------------------------------------------------------- outcomes
def test_succeed_records_the_result(tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock) -> None:
    attempts = executor(store, clock, "host-a:1")
    running = attempts.claim(delivered(tasks.submit(cmd(), ALICE).task))
    assert running is not None
    clock.advance(2)
    done = attempts.succeed(running, {"answer": 42})
    assert done is not None
    assert (done.status, done.result, done.worker) == (Status.SUCCEEDED, {"answer": 42}, None)
    assert store.get(done.id) == done
    assert store.events(done.id)[-1].data["duration_ms"] == 2000


def test_fail_schedules_the_retry_with_the_injected_jitter(
    tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock
) -> None:
    attempts = Attempts(store, RecordingQueue(), clock, worker="host-a:1", lease_s=LEASE_S, jitter=lambda: 0.5)
    running = attempts.claim(delivered(tasks.submit(cmd(retry={"backoff_base_s": 4}), ALICE).task))
    assert running is not None
    failed = attempts.fail(running, BOOM)
    assert failed is not None
    assert (failed.status, failed.last_error) == (Status.RETRYING, BOOM)
    assert failed.next_run_at == clock.now() + timedelta(seconds=3)  # 4 s less half of its half
    assert store.get(failed.id) == failed


def test_a_zombie_outcome_is_discarded(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock
) -> None:
    # Given attempt 1 on host A stalls past its lease, is lost, and attempt 2 runs on host B
    task = tasks.submit(cmd(), ALICE).task
    host_a, host_b = executor(store, clock, "host-a:1"), executor(store, clock, "host-b:2")
    zombie = host_a.claim(delivered(task))
    assert zombie is not None
    clock.advance(LEASE_S + 1)
    mutate(store, store.get(task.id), lambda t: t.expire_lease(clock.now(), jitter=0.0))
    clock.advance(5)
    assert promote_due(store, queue, clock, since=minute_of(clock.now())) == 1
    current = host_b.claim(delivered(queue.sent[-1]))
    assert current is not None
    assert (current.attempts, current.worker) == (2, "host-b:2")
    # When host A finally reports
    assert host_a.succeed(copy.deepcopy(zombie), "late") is None
    assert host_a.fail(copy.deepcopy(zombie), BOOM) is None
    # Then the stored task is untouched and attempt 2 can still finish
    assert store.get(task.id) == current
    done = host_b.succeed(current, "on time")
    assert done is not None
    assert (done.status, done.result) == (Status.SUCCEEDED, "on time")


# ---------------------------------------------------------------------------------------------- promotion
def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def retrying_task(tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock) -> Task:
    attempts = executor(store, clock, "host-a:1")
    running = attempts.claim(delivered(tasks.submit(cmd(), ALICE).task))
    assert running is not None
    failed = attempts.fail(running, BOOM)
    assert failed is not None
    assert failed.status is Status.RETRYING
    return failed


def test_a_retrying_task_is_queued_once_its_backoff_has_passed(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock
) -> None:
    # Given a task retrying 2 s from now (base 2 s, no jitter)
    task = retrying_task(tasks, store, clock)
    assert task.next_run_at == clock.now() + timedelta(seconds=2)
    sent_before = len(queue.sent)
    since = minute_of(clock.now())
    # When the scheduler runs before it is due, nothing happens
    assert promote_due(store, queue, clock, since=since) == 0
    clock.advance(2)
    assert promote_due(store, queue, clock, since=since) == 0
    assert store.get(task.id).status is Status.RETRYING
    # When it runs after, the task is queued and sent for attempt 2, once
    clock.advance(1)
    assert promote_due(store, queue, clock, since=since) == 1
    assert promote_due(store, queue, clock, since=since) == 0
    sent = queue.sent[sent_before:]
    assert [(t.id, t.status, Dispatch.of(t).attempt) for t in sent] == [(task.id, Status.QUEUED, 2)]
    stored = store.get(task.id)
    assert (stored.status, stored.queued_at) == (Status.QUEUED, clock.now())
    assert store.events(task.id)[-1].actor == "scheduler"


def test_promotion_only_looks_at_what_is_due_since_the_given_time(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock
) -> None:
    task = retrying_task(tasks, store, clock)
    clock.advance(10)
    assert task.next_run_at is not None
    assert promote_due(store, queue, clock, since=task.next_run_at + timedelta(seconds=1)) == 0
    assert promote_due(store, queue, clock, since=task.next_run_at) == 1


def test_a_scheduled_task_is_queued_at_its_time(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock
) -> None:
    at = clock.now() + timedelta(minutes=3)
    task = tasks.submit(cmd(schedule={"at": at}), ALICE).task
    since = minute_of(at)
    clock.advance(179)
    assert promote_due(store, queue, clock, since=since) == 0
    clock.advance(2)
    assert promote_due(store, queue, clock, since=since, actor="scheduler-2") == 1
    assert [(t.id, t.status) for t in queue.sent] == [(task.id, Status.QUEUED)]
    assert store.events(task.id)[-1].actor == "scheduler-2"


def test_a_cancelled_task_is_never_promoted(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock
) -> None:
    task = retrying_task(tasks, store, clock)
    mutate(store, store.get(task.id), lambda t: t.request_cancel("alice", clock.now()))
    clock.advance(10)
    assert promote_due(store, queue, clock, since=minute_of(clock.now())) == 0


# -------------------------------------------------------------------------------------------- type catalog
class CountingRegistry(InMemoryRegistry):
    """Counts reads, to see the catalog's cache at work."""

    reads = 0

    def task_types(self) -> dict[str, TypeInfo]:
        self.reads += 1
        return super().task_types()


def test_catalog_knows_registered_types() -> None:
    catalog = Catalog(InMemoryRegistry(["echo"]))
    catalog.require("echo")
    with pytest.raises(UnknownTaskType):
        catalog.require("sleep")


def test_catalog_caches_and_a_miss_does_not_hammer_the_registry() -> None:
    registry = CountingRegistry(["echo"])
    catalog = Catalog(registry, ttl_s=60)
    for _ in range(5):
        catalog.require("echo")
        with pytest.raises(UnknownTaskType):
            catalog.require("nope")
    assert registry.reads == 1


def test_catalog_sees_types_registered_after_its_cache_expired() -> None:
    registry = CountingRegistry(["echo"])
    catalog = Catalog(registry, ttl_s=0)
    catalog.require("echo")
    registry.register_types(["sleep"], by="executor-1")
    catalog.require("sleep")
    assert registry.reads >= 2


@pytest.mark.parametrize(
    "schedule",
    [
        {"every_s": 60, "start_at": "2020-01-01T00:00:00Z", "end_at": "2020-01-02T00:00:00Z"},
        {"cron": "0 0 30 2 *"},  # February 30th never comes
        {"cron": "0 0 * * *", "start_at": "2031-01-01T00:30:00Z", "end_at": "2031-01-01T23:00:00Z"},
    ],
)
def test_a_repeating_schedule_that_can_never_run_is_refused_and_nothing_is_written(
    tasks: Tasks, store: InMemoryTaskStore, queue: RecordingQueue, schedule: dict[str, Any]
) -> None:
    with pytest.raises(InvalidSchedule, match="no run left"):
        tasks.submit(cmd(schedule=schedule), ALICE)
    assert_nothing_written(store, queue)


def test_a_zombie_from_before_a_redrive_cannot_record_over_the_new_attempt(
    tasks: Tasks, store: InMemoryTaskStore, clock: FixedClock
) -> None:
    # Given attempt 1 claimed by a worker that then stalls, while the task fails and is redriven
    task_id = tasks.submit(cmd(retry={"max_retries": 0}), ALICE).task.id
    worker = executor(store, clock, "host:1")
    claimed = worker.claim(delivered(store.get(task_id)))
    assert claimed is not None
    zombie = copy.deepcopy(claimed)  # the stalled handler's view of its claim
    assert worker.fail(claimed, ErrorInfo("Boom", "first run")) is not None
    redriven = store.get(task_id)
    redriven.redrive("alice", clock.now())
    store.commit(redriven)
    # When the same worker process claims attempt 1 of the redriven task
    fresh = worker.claim(delivered(store.get(task_id)))
    assert fresh is not None
    assert (fresh.attempts, fresh.worker) == (zombie.attempts, zombie.worker)
    # Then the stalled first claim (same attempt number, same worker) cannot record its outcome
    assert worker.succeed(zombie, {"late": True}) is None
    assert store.get(task_id).status is Status.RUNNING
    # while the current claim can
    done = worker.succeed(fresh, {"ok": True})
    assert done is not None
    assert done.result == {"ok": True}
