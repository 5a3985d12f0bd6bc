"""Regressions for repeating tasks racing the scheduler, the executor and PATCH.

Each test pins one bug a review found (its script in brackets): a staged run whose slot came due again after a
PATCH (h1); a slot of an ``overlap: allow`` task run twice, or a spawn recorded for a child never created, when
the scheduler acted on a stale read (h2, h2b); a time set in the past landing in a due bucket already drained
(h3, h3b); a redrive reusing run ids (h4); a message of an earlier run claiming the next one (h5); an
``overlap: queue`` run left unsent when the run before it succeeded (h6); and ``/runs`` losing a run's slot after
a release (h8).

The builders are the ones of ``test_repeating.py``, copied: with ``--import-mode=importlib`` a test module is
not importable from another one without putting its folder on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.adapters.dynamodb import keys
from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.codec import ts
from tqcore.domain.commands import SubmitTask, UpdateTask
from tqcore.domain.errors import IllegalTransition, StaleAttempt
from tqcore.domain.model import ErrorInfo, Event, EventType, Status
from tqcore.domain.runs import project_runs
from tqcore.domain.task import Task
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.scheduling import Pass, Promoter
from tqcore.usecases.service import Catalog, Tasks, mutate

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WORKER = "host-a:101"
OWNER = "alice"
USER = "bob"
ALICE = Principal(OWNER, frozenset({"team-a"}))
BOOM = ErrorInfo("ValueError", "boom")
#: The scheduler's default: a catch-up run may start up to an hour after its slot.
DEADLINE_S = 3600.0
SHARDS = 4
LEASE_S = 30


# ----------------------------------------------------------------------------------------------- builders
def at(seconds: float) -> datetime:
    """``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def accepted(now: datetime = T0, **body: Any) -> Task:
    """A task accepted the way the gateway accepts one (validated command), with its submit events."""
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", **body})
    return Task.submit(task_id="t-1", owner=OWNER, now=now, submitted=cmd.model_dump(mode="json"), **cmd.task_fields())


def submit(now: datetime = T0, **body: Any) -> Task:
    """An accepted task with its submit events committed (so a test sees only what happened after)."""
    return accepted(now, **body).committed()


def every(seconds: float, **schedule: Any) -> dict[str, Any]:
    return {"every_s": seconds, **{k: v.isoformat() if isinstance(v, datetime) else v for k, v in schedule.items()}}


def changes(**body: Any) -> dict[str, Any]:
    """The domain changes of a PATCH body, validated as the gateway validates it."""
    return UpdateTask.model_validate(body).changes()


def claim(task: Task, now: datetime) -> None:
    task.claim(task.attempts + 1, WORKER, now, LEASE_S)


def run_ok(task: Task, started: datetime, finished: datetime | None = None) -> None:
    """One attempt of the queued task, claimed at ``started`` and succeeding at ``finished``."""
    claim(task, started)
    task.succeed(task.attempts, WORKER, {"ok": True}, finished or started)


def run_dead(task: Task, now: datetime) -> None:
    """The queued task's run fails every attempt until its retries are spent (each retry promoted at once)."""
    while True:
        claim(task, now)
        task.fail(task.attempts, WORKER, BOOM, now, jitter=0.0)
        if task.status is not Status.RETRYING:
            return
        assert task.next_run_at is not None
        now = task.next_run_at
        task.promote(now)


def due(task: Task, now: datetime, deadline_s: float = DEADLINE_S) -> Task | None:
    return task.on_due(now, starting_deadline_s=deadline_s)


def of_type(events: list[Event], kind: EventType) -> list[Event]:
    return [e for e in events if e.type is kind]


def slot_id(task_id: str, slot: datetime) -> str:
    """The id of the task spawned for ``slot`` (``overlap: allow``)."""
    return f"{task_id}-{(slot - EPOCH) // timedelta(milliseconds=1)}"


# ------------------------------------------------------------------------------------- store and scheduler
class RaceAfterRead(InMemoryTaskStore):
    """A store where another writer commits ``race`` right after the first due-index read that finds a task:
    the scheduler then acts on what it read, which is already stale."""

    def __init__(self) -> None:
        super().__init__()
        self._race: Callable[[InMemoryTaskStore], Any] | None = None

    def after_next_read(self, race: Callable[[InMemoryTaskStore], Any]) -> None:
        """Commit ``race`` as soon as the due index has been read."""
        self._race = race

    def due(self, since: datetime, until: datetime, *, part: tuple[int, int] = (0, 1)) -> Iterator[Task]:
        found = list(super().due(since, until, part=part))
        if found and self._race is not None:
            race, self._race = self._race, None
            race(self)
        return iter(found)


def change(store: InMemoryTaskStore, task_id: str, fn: Callable[[Task], Any]) -> Task:
    """Commit ``fn`` on the stored task (what another process does)."""
    return mutate(store, store.get(task_id), fn)


def regular_pass(store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock) -> Pass:
    """One scheduler pass over what a regular pass reads: from its mark (the previous minute) to now."""
    since = (clock.now() - timedelta(minutes=1)).replace(second=0, microsecond=0)
    promoter = Promoter(store, queue, clock, parts=SHARDS, starting_deadline_s=DEADLINE_S)
    try:
        return promoter.run(since)
    finally:
        promoter.close()


def gateway_parts(clock: FixedClock) -> tuple[Tasks, InMemoryTaskStore, RecordingQueue]:
    """The submit/PATCH use cases over fakes, as the gateway calls them."""
    store, queue = InMemoryTaskStore(), RecordingQueue()
    ids = (f"t-{n}" for n in itertools.count(1))
    return Tasks(store, queue, Catalog(InMemoryRegistry(["echo"])), clock, lambda: next(ids)), store, queue


# --------------------------------------------------------------------------- h1: a staged run, then PATCH
@pytest.mark.parametrize("overlap", ["queue", "allow", "skip"])
@pytest.mark.parametrize(
    ("new_schedule", "next_slot"),
    [
        pytest.param(every(10, end_at=datetime(2030, 1, 1, tzinfo=UTC)), at(20), id="end_at-extended"),
        pytest.param(every(5), at(15), id="new-interval"),
    ],
)
def test_a_slot_staged_ahead_does_not_come_due_again_after_a_patch_before_it(
    overlap: str, new_schedule: dict[str, Any], next_slot: datetime
) -> None:
    # Given an every-10-s task whose run for T0+10s the scheduler staged at T0+5s (committed queued, as of T0+10s)
    task = submit(schedule=every(10), overlap=overlap)
    run_ok(task, at(0), at(1))
    task = task.committed()
    assert task.stageable()
    due(task, at(10))
    task = task.committed()
    assert (task.status, task.next_slot_at) == (Status.QUEUED, at(20))
    # When a user PATCHes its schedule at T0+7s, before that slot
    task.update(changes(schedule=new_schedule), USER, at(7))
    task = task.committed()
    # Then the staged slot is behind the schedule: the next slot is after it, and so is the next wake-up
    assert task.next_slot_at == next_slot
    assert task.wake_at is not None
    assert task.wake_at > at(10)
    # When the staged run starts at its time and the scheduler looks at the task half a second later
    claim(task, at(10))
    task = task.committed()
    spawned = None
    with contextlib.suppress(IllegalTransition):  # "not due" is the expected answer
        spawned = due(task, at(10.5))
    # Then T0+10s is not acted on a second time: nothing waits for, spawns or skips it
    assert spawned is None
    busy_events = (EventType.RUN_WAITING, EventType.RUN_SPAWNED, EventType.RUN_SKIPPED)
    assert [e for e in task.pending_events if e.type in busy_events] == []
    # And the next slot that falls due while the run goes on is the new one
    due(task, next_slot)
    (acted,) = [e for e in task.pending_events if e.type in busy_events]
    assert acted.data["scheduled_for"] == next_slot


# ------------------------------------------------------------------- h2: overlap allow, the run ends meanwhile
def test_overlap_allow_runs_a_slot_once_when_the_run_under_way_ends_while_it_is_spawned() -> None:
    # Given an every-10-s task (overlap: allow) running the run of its first slot
    store, queue, clock = RaceAfterRead(), RecordingQueue(), FixedClock(at(10.2))
    store.create(accepted(schedule=every(10), overlap="allow"))
    change(store, "t-1", lambda t: claim(t, at(1)))
    # And the run ends right after the scheduler read the task as running past its next slot, T0+10s
    store.after_next_read(lambda s: change(s, "t-1", lambda t: t.succeed(t.attempts, WORKER, {}, at(10.1))))
    # When the scheduler acts on the slot (spawning it, as a running task's slot is)
    regular_pass(store, queue, clock)
    # Then the slot runs exactly once, as the spawned task, and only that task is sent
    child_id = slot_id("t-1", at(10))
    assert [t.id for t in queue.sent] == [child_id]
    child = store.get(child_id)
    assert child.status is Status.QUEUED
    runs_of_slot = [
        e
        for task_id in ("t-1", child_id)
        for e in of_type(store.events(task_id), EventType.QUEUED)
        if e.data.get("scheduled_for") == at(10)
    ]
    assert len(runs_of_slot) == 1
    # And the parent, whose run did end meanwhile, records the spawn and waits for the slot after
    assert len(of_type(store.events("t-1"), EventType.SUCCEEDED)) == 1
    parent = store.get("t-1")
    (spawned,) = of_type(store.events("t-1"), EventType.RUN_SPAWNED)
    assert spawned.data == {"task_id": child_id, "scheduled_for": at(10)}
    assert (parent.status, parent.next_run_at) == (Status.SCHEDULED, at(20))


# ------------------------------------------------------------------------ h2b: a replica's stale read
def test_a_replica_acting_on_a_stale_read_never_records_a_spawn_it_did_not_create() -> None:
    # Given an every-second task (overlap: allow) starting at T0+10s, which replica B reads as scheduled
    store, queue, clock = RaceAfterRead(), RecordingQueue(), FixedClock(at(11.2))
    store.create(accepted(schedule=every(1, start_at=at(10)), overlap="allow"))
    # And replica A queues the run of T0+10s right after B's read; B gets to its commit at T0+11.2s
    store.after_next_read(lambda s: change(s, "t-1", lambda t: due(t, at(10))))
    # When B acts on what it read
    regular_pass(store, queue, clock)
    # Then every spawn the parent records names a task that exists
    for spawned in of_type(store.events("t-1"), EventType.RUN_SPAWNED):
        store.get(spawned.data["task_id"])  # raises TaskNotFound for a spawn that was never created
    assert [t.id for t in queue.sent] == []
    # When the next pass comes
    regular_pass(store, queue, clock)
    # Then the slot due while the run goes on (T0+11s) is spawned, created and sent
    child_id = slot_id("t-1", at(11))
    (spawned,) = of_type(store.events("t-1"), EventType.RUN_SPAWNED)
    assert spawned.data == {"task_id": child_id, "scheduled_for": at(11)}
    assert store.get(child_id).status is Status.QUEUED
    assert [t.id for t in queue.sent] == [child_id]


# ---------------------------------------------------------------- h3, h3b: times set in the past by a write
@pytest.mark.parametrize(
    ("wake", "expected"),
    [
        pytest.param(timedelta(minutes=-30), timedelta(0), id="wake-before-the-write"),
        pytest.param(timedelta(minutes=5), timedelta(minutes=5), id="wake-after-the-write"),
    ],
)
def test_the_due_key_of_a_task_is_never_older_than_its_last_write(wake: timedelta, expected: timedelta) -> None:
    # Given a task written at T0+2h that must wake at some time
    written = at(7200)
    task = submit(schedule={"at": (written + wake).isoformat()})
    task.updated_at = written
    # When its index keys are computed
    attrs = keys.index_attributes(task, due_shards=SHARDS, reap_shards=SHARDS, resend_after_s=30)
    # Then the due key is its wake-up time, floored to the write (a bucket no scheduler has drained yet)
    key_time = written + expected
    assert attrs["due_pk"] == f"DUE#{keys.minute_bucket(key_time)}#{keys.shard_of('t-1', SHARDS)}"
    assert attrs["due_sk"] == f"{ts(key_time)}#t-1"


def test_a_schedule_patched_to_a_time_long_past_is_queued_by_the_next_regular_pass() -> None:
    # Given a task scheduled an hour ahead, and a scheduler that has been draining the current minutes since
    clock = FixedClock(T0)
    tasks, store, queue = gateway_parts(clock)
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", "schedule": {"at": at(3600).isoformat()}})
    task_id = tasks.submit(cmd, ALICE).task.id
    for _ in range(3):
        regular_pass(store, queue, clock)
        clock.advance(60)
    # When a user PATCHes its schedule to a time half an hour ago
    past = clock.now() - timedelta(minutes=30)
    tasks.update(task_id, UpdateTask.model_validate({"schedule": {"at": past.isoformat()}}), ALICE)
    clock.advance(1)
    # Then the scheduler's next regular pass finds it and queues it
    assert regular_pass(store, queue, clock).queued == 1
    assert store.get(task_id).status is Status.QUEUED
    assert [t.id for t in queue.sent] == [task_id]


@pytest.mark.parametrize("how", ["submit", "patch"])
def test_an_expires_at_long_past_is_found_by_the_next_regular_pass(how: str) -> None:
    # Given a task scheduled five minutes ahead with (or PATCHed to) an expiry an hour ago
    clock = FixedClock(T0)
    tasks, store, queue = gateway_parts(clock)
    expired = {"expires_at": (T0 - timedelta(hours=1)).isoformat()}
    body = {"type": "echo", "group": "team-a", "schedule": {"at": at(300).isoformat()}}
    task_id = tasks.submit(SubmitTask.model_validate(body | (expired if how == "submit" else {})), ALICE).task.id
    regular_pass(store, queue, clock)
    if how == "patch":
        tasks.update(task_id, UpdateTask.model_validate(expired), ALICE)
    clock.advance(1)
    # When the scheduler makes its next regular pass
    regular_pass(store, queue, clock)
    # Then it finds the task and expires it, with nothing sent
    task = store.get(task_id)
    assert task.status is Status.EXPIRED
    assert task.wake_at is None
    assert queue.sent == []


# ------------------------------------------------------------------------------------ h4: redrive run ids
def test_a_redriven_repeating_task_gives_its_new_attempts_new_run_ids() -> None:
    # Given an every-10-s task ending at T0+15s whose last run (T0+10s) failed for good, so the task failed
    task = accepted(schedule=every(10, end_at=at(15)), retry={"max_retries": 0})
    run_ok(task, at(0))
    due(task, at(10))
    run_dead(task, at(10))
    assert task.status is Status.FAILED
    # When it is redriven and that run fails again
    task.redrive(USER, at(20))
    run_dead(task, at(20))
    # Then every attempt in /runs has its own run id: the redriven work is run 3
    run_ids = [r.run_id for r in project_runs(task.pending_events)]
    assert len(run_ids) == len(set(run_ids))
    assert run_ids == ["3.1", "2.1", "1.1"]


# ---------------------------------------------------------------------------- h5: a message of an old run
def staged_second_run() -> tuple[Task, Dispatch]:
    """An every-10-s task whose second run (T0+10s) was staged at T0+5s, and the first run's message."""
    task = submit(schedule=every(10))
    first_message = Dispatch.of(task)
    run_ok(task, at(0), at(1))
    task = task.committed()
    due(task, at(10))
    return task.committed(), first_message


def test_a_message_of_an_earlier_run_cannot_claim_the_run_staged_ahead() -> None:
    # Given a task whose second run is staged, queued ahead of its slot
    task, _ = staged_second_run()
    before = copy.deepcopy(task)
    # When an attempt-1 message of the first run arrives at T0+5.5s
    # Then the claim is refused and the task is untouched
    with pytest.raises(StaleAttempt):
        task.claim(1, WORKER, at(5.5), LEASE_S, run=1)
    assert task == before
    assert task.pending_events == []
    # And the second run's own message claims it
    task.claim(1, WORKER, at(10), LEASE_S, run=task.run_no)
    assert task.status is Status.RUNNING
    assert of_type(task.pending_events, EventType.CLAIMED)[0].data["run_id"] == "2.1"


def test_a_dispatch_names_its_run_and_keeps_it_through_the_wire() -> None:
    # Given a task queued for its second run
    task, _ = staged_second_run()
    # When its dispatch is built
    dispatch = Dispatch.of(task)
    # Then it names that run, and the run survives encoding, with or without the snapshot
    assert dispatch.run == task.run_no == 2
    assert Dispatch.from_dict(json.loads(json.dumps(dispatch.to_dict()))) == dispatch
    assert Dispatch.from_dict({**dispatch.to_dict(), "task": None}).run == 2


def test_an_executor_drops_a_late_message_of_an_earlier_run() -> None:
    # Given a store holding a task whose second run is staged, and the first run's message delivered late
    clock = FixedClock(at(5.5))
    store, queue = InMemoryTaskStore(), RecordingQueue()
    task, first_message = staged_second_run()
    store.create(task)
    attempts = Attempts(store, queue, clock, worker=WORKER, lease_s=LEASE_S)
    # When an executor takes that message
    # Then it claims nothing, and the staged run still waits for its own message
    assert attempts.claim(first_message) is None
    after = store.get("t-1")
    assert (after.status, after.attempts, after.version) == (Status.QUEUED, 0, task.version)


# ----------------------------------------------------------------------- h6: overlap queue, the hand-over
def test_overlap_queue_sends_the_waiting_run_as_soon_as_the_running_one_succeeds() -> None:
    # Given an every-10-s task (overlap: queue) whose first run is running on an executor
    clock = FixedClock(T0)
    store, queue = InMemoryTaskStore(), RecordingQueue()
    store.create(accepted(schedule=every(10), overlap="queue"))
    attempts = Attempts(store, queue, clock, worker=WORKER, lease_s=LEASE_S)
    running = attempts.claim(Dispatch.of(store.get("t-1")))
    assert running is not None
    # And its next slot came due meanwhile, so a run waits for it
    clock.advance(10.5)
    regular_pass(store, queue, clock)
    assert store.get("t-1").waiting_slot == at(10)
    assert queue.sent == []
    # When the running run succeeds
    clock.advance(2)
    attempts.succeed(running, {})
    # Then the waiting run is queued and sent at once, for its slot
    stored = store.get("t-1")
    assert stored.status is Status.QUEUED
    assert [(t.id, t.status, t.version) for t in queue.sent] == [("t-1", Status.QUEUED, stored.version)]
    assert of_type(store.events("t-1"), EventType.QUEUED)[-1].data["scheduled_for"] == at(10)


# --------------------------------------------------------------------------- h8: /runs after a release
def test_runs_keep_the_slot_of_an_attempt_requeued_after_a_release() -> None:
    # Given an every-minute task whose run for T0+60s is running
    task = accepted(schedule=every(60))
    run_ok(task, at(1))
    due(task, at(60))
    claim(task, at(61))
    # When the executor shuts down and gives the attempt back, and another executor runs it
    task.release(1, WORKER, at(62))
    run_ok(task, at(63))
    # Then /runs lists both attempts for the slot T0+60s
    runs = project_runs(task.pending_events)
    assert [(r.run_id, r.scheduled_for) for r in runs[:2]] == [("2.2", at(60)), ("2.1", at(60))]


def test_runs_keep_the_slot_of_a_retry_requeued_after_a_release() -> None:
    # Given an every-minute task whose first run failed once and whose retry is running
    task = accepted(schedule=every(60), retry={"max_retries": 3})
    claim(task, at(0))
    task.fail(1, WORKER, BOOM, at(1), jitter=0.0)
    assert task.next_run_at is not None
    due(task, task.next_run_at)
    claim(task, at(5))
    # When the executor shuts down and gives the retry back, and another executor runs it
    task.release(2, WORKER, at(6))
    claim(task, at(7))
    task.succeed(3, WORKER, {}, at(8))
    # Then the attempt after the release is still listed for the run's slot, T0
    (third, *_) = project_runs(task.pending_events)
    assert (third.run_id, third.scheduled_for) == ("1.3", T0)
