"""The task aggregate as a repeating task: its runs, catch-up, overlap, ends, cancel, expiry and PATCH."""

from __future__ import annotations

import contextlib
import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.domain.commands import SubmitTask, UpdateTask
from tqcore.domain.errors import IllegalTransition, InvalidSchedule
from tqcore.domain.model import ErrorInfo, Event, EventType, Priority, Status
from tqcore.domain.runs import project_runs
from tqcore.domain.task import Task

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WORKER = "host-a:101"
OWNER = "alice"
USER = "bob"
BOOM = ErrorInfo("ValueError", "boom")
#: The scheduler's default: a catch-up run may start up to an hour after its slot.
DEADLINE_S = 3600.0


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


def claim(task: Task, now: datetime) -> None:
    task.claim(task.attempts + 1, WORKER, now, 30)


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


def of_type(task: Task, kind: EventType) -> list[Event]:
    """The task's uncommitted events of one type."""
    return [e for e in task.pending_events if e.type is kind]


def new(task: Task) -> Task:
    """The task with its recorded events committed, so the next step's events stand alone."""
    return task.committed()


# --------------------------------------------------------------------------------------------- submission
def test_an_interval_task_without_start_at_queues_its_first_run_at_once() -> None:
    # Given a submit at a time with sub-millisecond digits
    now = T0 + timedelta(microseconds=123_456)
    created = T0 + timedelta(milliseconds=123)
    # When an every-10-s task is submitted
    task = accepted(now, schedule=every(10))
    # Then its first run is queued at once, for the slot at its (millisecond) creation time
    assert task.status is Status.QUEUED
    assert task.next_run_at is None
    assert task.next_slot_at == created + timedelta(seconds=10)
    queued = of_type(task, EventType.QUEUED)
    assert [e.data["scheduled_for"] for e in queued] == [created]
    # And the scheduler wakes for it at its next slot (to act on that slot if the run is still going)
    assert task.wake_at == task.next_slot_at


def test_an_interval_task_with_a_future_start_at_waits_for_it() -> None:
    # Given / When an every-10-s task starting in an hour is submitted
    task = submit(schedule=every(10, start_at=at(3600)))
    # Then it is scheduled for start_at, its first slot
    assert task.status is Status.SCHEDULED
    assert task.next_run_at == task.next_slot_at == at(3600)
    assert task.wake_at == at(3600)


def test_a_cron_task_is_scheduled_for_its_first_slot() -> None:
    # Given / When a five-minute cron task is submitted half a minute past the hour
    task = submit(now=at(30), schedule={"cron": "*/5 * * * *"})
    # Then it waits for the first slot after that: five past
    assert task.status is Status.SCHEDULED
    assert task.next_run_at == task.next_slot_at == at(300)


def test_a_cron_task_in_a_zone_is_scheduled_for_the_first_wall_clock_match() -> None:
    # Given / When a daily 09:00 task in Tokyo (UTC+9) is submitted at 08:00Z (17:00 in Tokyo)
    task = submit(schedule={"cron": "0 9 * * *", "timezone": "Asia/Tokyo"})
    # Then it runs next at 09:00 Tokyo the following day, which is midnight UTC
    assert task.next_run_at == datetime(2026, 1, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "schedule",
    [
        pytest.param({"cron": "0 0 30 2 *"}, id="cron-never-matches"),
        pytest.param(every(10, start_at=at(-7200), end_at=at(-3600)), id="interval-ended"),
    ],
)
def test_a_schedule_with_no_slot_left_is_refused_at_submit(schedule: dict[str, Any]) -> None:
    # Given / When / Then a schedule that would never run is refused
    with pytest.raises(InvalidSchedule):
        submit(schedule=schedule)


# ------------------------------------------------------------------------------------------------- runs
def test_after_a_successful_run_the_task_waits_for_its_next_slot() -> None:
    # Given an every-10-s task whose first run is queued
    task = submit(schedule=every(10))
    # When the run succeeds
    run_ok(task, at(1), at(2))
    # Then the task is scheduled for its next slot, with the run counted and the attempts reset
    assert task.status is Status.SCHEDULED
    assert task.next_run_at == at(10)
    assert task.run_count == 1
    assert task.attempts == 0
    assert task.finished_at is None
    assert task.result == {"ok": True}
    assert task.wake_at == at(10)


def test_a_run_that_needed_a_retry_still_leaves_the_next_run_a_fresh_attempt_budget() -> None:
    # Given an every-minute task whose first attempt failed and was retried
    task = submit(schedule=every(60))
    claim(task, at(1))
    task.fail(1, WORKER, BOOM, at(2), jitter=0.0)
    assert task.status is Status.RETRYING
    assert task.next_run_at is not None
    task.promote(task.next_run_at)
    # When the retry succeeds, and the next slot's run is queued and claimed
    run_ok(task, at(5))
    task = new(task)
    due(task, at(60))
    claim(task, at(61))
    # Then that run starts at attempt 1, as run 2
    claimed = of_type(task, EventType.CLAIMED)
    assert [(e.data["attempt"], e.data["run_id"]) for e in claimed] == [(1, "2.1")]


def test_a_run_that_exhausts_its_retries_is_dead_lettered_and_the_schedule_goes_on() -> None:
    # Given an every-minute task with two retries
    task = submit(schedule=every(60), retry={"max_retries": 2})
    # When every attempt of its first run fails
    run_dead(task, at(1))
    # Then the run is dead-lettered, noting the schedule continues, and the task waits for its next slot
    dead = of_type(task, EventType.DEAD_LETTERED)
    assert len(dead) == 1
    assert dead[0].data["schedule_continues"] is True
    assert dead[0].data["attempts"] == 3
    assert task.status is Status.SCHEDULED
    assert task.next_run_at == at(60)
    assert task.run_count == 1
    assert task.attempts == 0
    assert task.last_error == BOOM


def test_the_run_of_the_last_slot_before_end_at_ends_the_task_succeeded() -> None:
    # Given an every-10-s task ending at T0+25s: its slots are T0, T0+10s and T0+20s
    task = submit(schedule=every(10, end_at=at(25)))
    run_ok(task, at(0.5))
    due(task, at(10))
    run_ok(task, at(10.5))
    assert (task.status, task.next_run_at) == (Status.SCHEDULED, at(20))
    due(task, at(20))
    assert task.next_slot_at is None  # no slot is left after this run
    # When the last slot's run succeeds
    run_ok(task, at(20.5), at(21))
    # Then the task is over: succeeded, with nothing to wake for
    assert task.status is Status.SUCCEEDED
    assert task.finished_at == at(21)
    assert task.run_count == 3
    assert task.next_run_at is None
    assert task.wake_at is None


def test_a_last_run_that_is_dead_lettered_ends_the_task_failed() -> None:
    # Given an every-10-s task ending at T0+15s, whose last slot's run (T0+10s) is queued
    task = submit(schedule=every(10, end_at=at(15)), retry={"max_retries": 1})
    run_ok(task, at(0.5))
    due(task, at(10))
    task = new(task)
    # When that run exhausts its retries
    run_dead(task, at(10.5))
    # Then the task fails (no schedule continues)
    assert task.status is Status.FAILED
    dead = of_type(task, EventType.DEAD_LETTERED)
    assert len(dead) == 1
    assert "schedule_continues" not in dead[0].data
    assert task.wake_at is None


# -------------------------------------------------------------------------------------- due and catch-up
def test_a_scheduled_task_due_on_its_slot_queues_one_run_for_that_slot() -> None:
    # Given an every-10-s task waiting for its slot at T0+10s
    task = submit(schedule=every(10))
    run_ok(task, at(1))
    task = new(task)
    # When the scheduler finds it due exactly then
    spawned = due(task, at(10))
    # Then one run is queued for that slot, nothing is skipped, and the next slot moves on
    assert spawned is None
    assert task.status is Status.QUEUED
    assert [e.data["scheduled_for"] for e in of_type(task, EventType.QUEUED)] == [at(10)]
    assert of_type(task, EventType.RUN_SKIPPED) == []
    assert task.next_slot_at == at(20)


def test_after_missed_slots_one_run_catches_up_and_the_rest_are_recorded_as_skipped() -> None:
    # Given an every-10-s task due at T0+10s that nobody looked at until T0+65.5s
    task = submit(schedule=every(10))
    run_ok(task, at(1))
    task = new(task)
    missed = [at(s) for s in range(10, 66, 10)]  # T0+10s ... T0+60s
    # When the scheduler finds it due
    due(task, at(65.5))
    # Then exactly one run is queued, for the latest missed slot
    queued = of_type(task, EventType.QUEUED)
    assert [e.data["scheduled_for"] for e in queued] == [missed[-1]]
    assert task.status is Status.QUEUED
    # And the other missed slots are one run_skipped event (catch_up) counting them
    (skipped,) = of_type(task, EventType.RUN_SKIPPED)
    assert skipped.data["reason"] == "catch_up"
    assert skipped.data["count"] == len(missed) - 1
    assert skipped.data["first"] == missed[0]
    # And the next slot is the first one after now
    assert task.next_slot_at == at(70)


def test_the_catch_up_run_is_listed_with_the_slot_it_ran_for() -> None:
    # Given a catch-up run queued at T0+65.5s for the slot at T0+60s
    task = accepted(schedule=every(10))
    run_ok(task, at(1))
    due(task, at(65.5))
    # When it is claimed
    claim(task, at(66))
    # Then /runs shows it as run 2, scheduled for T0+60s
    runs = project_runs(task.pending_events)
    assert [(r.run_id, r.scheduled_for) for r in runs] == [("2.1", at(60)), ("1.1", T0)]


def test_a_slot_older_than_the_starting_deadline_is_not_run_and_the_task_waits_for_the_next() -> None:
    # Given an hourly task whose 09:00 slot was missed, found due five minutes late with a one-minute deadline
    task = submit(schedule=every(3600))
    run_ok(task, at(1))
    task = new(task)
    # When the scheduler finds it due
    due(task, at(3600 + 300), deadline_s=60)
    # Then nothing is queued; the slot is skipped as too late, and the task waits for the next slot
    assert of_type(task, EventType.QUEUED) == []
    (skipped,) = of_type(task, EventType.RUN_SKIPPED)
    assert skipped.data["reason"] == "starting_deadline"
    assert skipped.data["count"] == 1
    assert skipped.data["last"] == at(3600)
    assert task.status is Status.SCHEDULED
    assert task.next_run_at == task.next_slot_at == at(7200)


def test_past_the_starting_deadline_every_missed_slot_is_counted_as_skipped() -> None:
    # Given an hourly task found due three hours and five minutes after its last run
    task = submit(schedule=every(3600))
    run_ok(task, at(1))
    task = new(task)
    # When the scheduler finds it due with a one-minute deadline
    due(task, at(3 * 3600 + 300), deadline_s=60)
    # Then all three missed slots are skipped and the task waits for the slot after now
    (skipped,) = of_type(task, EventType.RUN_SKIPPED)
    assert (skipped.data["reason"], skipped.data["count"]) == ("starting_deadline", 3)
    assert task.next_run_at == at(4 * 3600)


def test_a_task_found_before_its_time_is_not_changed() -> None:
    # Given an every-minute task scheduled for T0+60s
    task = submit(schedule=every(60))
    run_ok(task, at(1))
    task = new(task)
    before = copy.deepcopy(task)
    # When the scheduler calls it due a second early
    # Then it refuses, and the task is untouched
    with pytest.raises(IllegalTransition):
        due(task, at(59))
    assert task == before
    assert task.pending_events == []


def test_a_running_task_found_before_its_next_slot_is_not_changed() -> None:
    # Given an every-minute task running its first run
    task = submit(schedule=every(60))
    claim(task, at(1))
    task = new(task)
    # When / Then the scheduler cannot act on it before the next slot
    with pytest.raises(IllegalTransition):
        due(task, at(30))


# ---------------------------------------------------------------------------------------------- overlap
def test_overlap_skip_records_the_slot_as_skipped_and_leaves_the_run_alone() -> None:
    # Given an every-10-s task (overlap: skip) whose first run is still going at its next slot
    task = submit(schedule=every(10))
    claim(task, at(1))
    task = new(task)
    assert task.wake_at == at(10)
    # When the scheduler finds the slot due
    spawned = due(task, at(10))
    # Then the slot is skipped (reason overlap), the run goes on, and the scheduler next wakes at the slot after
    assert spawned is None
    (skipped,) = of_type(task, EventType.RUN_SKIPPED)
    assert skipped.data["reason"] == "overlap"
    assert skipped.data["scheduled_for"] == at(10)
    assert of_type(task, EventType.QUEUED) == []
    assert task.status is Status.RUNNING
    assert task.worker == WORKER
    assert task.wake_at == at(20)
    # And when the run ends, the task waits for that next slot
    task.succeed(1, WORKER, None, at(12))
    assert (task.status, task.next_run_at) == (Status.SCHEDULED, at(20))


def test_overlap_queue_keeps_one_run_waiting_and_starts_it_when_the_current_run_ends() -> None:
    # Given an every-10-s task (overlap: queue) whose first run is still going
    task = submit(schedule=every(10), overlap="queue")
    claim(task, at(1))
    task = new(task)
    # When its next slot falls due
    due(task, at(10))
    # Then that slot waits for the current run
    assert task.waiting_slot == at(10)
    assert [e.data["scheduled_for"] for e in of_type(task, EventType.RUN_WAITING)] == [at(10)]
    assert task.status is Status.RUNNING
    task = new(task)
    # When another slot falls due while the run still goes
    due(task, at(20))
    # Then that one is skipped: only one run may wait
    (skipped,) = of_type(task, EventType.RUN_SKIPPED)
    assert (skipped.data["reason"], skipped.data["scheduled_for"]) == ("overlap", at(20))
    assert task.waiting_slot == at(10)
    task = new(task)
    # When the current run ends
    task.succeed(1, WORKER, None, at(25))
    # Then the waiting run is queued at once, for its slot
    assert task.status is Status.QUEUED
    assert task.waiting_slot is None
    assert [e.data["scheduled_for"] for e in of_type(task, EventType.QUEUED)] == [at(10)]
    assert task.next_slot_at == at(30)
    # And /runs lists it for that slot once it starts
    claim(task, at(26))
    assert project_runs(task.pending_events)[0].scheduled_for == at(10)


def test_overlap_queue_starts_the_waiting_run_after_a_dead_lettered_one() -> None:
    # Given an every-10-s task (overlap: queue, no retries) with a run waiting behind the current one
    task = submit(schedule=every(10), overlap="queue", retry={"max_retries": 0})
    claim(task, at(1))
    due(task, at(10))
    task = new(task)
    # When the current run fails for good
    task.fail(1, WORKER, BOOM, at(11), jitter=0.0)
    # Then the schedule goes on: the waiting run is queued
    assert of_type(task, EventType.DEAD_LETTERED)[0].data["schedule_continues"] is True
    assert task.status is Status.QUEUED
    assert [e.data["scheduled_for"] for e in of_type(task, EventType.QUEUED)] == [at(10)]


def test_overlap_allow_spawns_the_due_slot_as_its_own_task() -> None:
    # Given an every-10-s task (overlap: allow) with a payload, whose first run is still going
    task = submit(schedule=every(10), overlap="allow", payload={"n": [1, 2]}, priority="high", name="nightly")
    claim(task, at(1))
    task = new(task)
    # When its next slot falls due
    child = due(task, at(10.2))
    # Then a one-shot task for that slot is returned, queued, with the parent's work and a slot-derived id
    assert child is not None
    slot_ms = (at(10) - EPOCH) // timedelta(milliseconds=1)
    assert child.id == f"t-1-{slot_ms}"
    assert child.parent_id == "t-1"
    assert child.status is Status.QUEUED
    assert (child.type, child.group, child.owner) == (task.type, task.group, task.owner)
    assert (child.payload, child.priority, child.name) == ({"n": [1, 2]}, Priority.HIGH, "nightly")
    assert child.schedule is None
    assert [e.data["scheduled_for"] for e in of_type(child, EventType.QUEUED)] == [at(10)]
    # And the parent records the spawn and goes on running
    (spawned,) = of_type(task, EventType.RUN_SPAWNED)
    assert spawned.data == {"task_id": child.id, "scheduled_for": at(10)}
    assert task.status is Status.RUNNING
    assert task.next_slot_at == at(20)
    # And the child's payload is its own copy
    child.payload["n"].append(3)
    assert task.payload == {"n": [1, 2]}


def test_spawning_the_same_slot_twice_gives_the_same_id() -> None:
    # Given a repeating task
    task = submit(schedule=every(10), overlap="allow")
    # When two schedulers spawn the same slot at different times
    first = task.spawn_run(at(10), at(10.1))
    second = task.spawn_run(at(10), at(10.9))
    # Then both name the same task (so the store keeps only one)
    assert first.id == second.id


def test_a_spawned_run_id_names_its_slot_to_the_millisecond_for_any_slot() -> None:
    # Given a slot with a millisecond part whose epoch seconds do not multiply exactly to milliseconds in floats
    task = submit(schedule=every(10), overlap="allow")
    slot = datetime(2039, 7, 7, 12, 34, 41, 23_000, tzinfo=UTC)
    slot_ms = (slot - EPOCH) // timedelta(milliseconds=1)
    # When the slot is spawned
    child = task.spawn_run(slot, slot)
    # Then its id carries the slot's epoch milliseconds exactly
    assert child.id == f"t-1-{slot_ms}"


# ------------------------------------------------------------------------------------------------ cancel
def test_cancelling_a_scheduled_repeating_task_cancels_it_at_once() -> None:
    # Given an every-minute task waiting for its next slot
    task = submit(schedule=every(60))
    run_ok(task, at(1))
    task = new(task)
    # When a user cancels it
    task.request_cancel(USER, at(30))
    # Then it is cancelled with nothing left to wake for
    assert task.status is Status.CANCELLED
    assert (task.next_run_at, task.next_slot_at, task.wake_at) == (None, None, None)


@pytest.mark.parametrize("outcome", ["succeed", "fail"])
def test_cancelling_a_running_repeating_task_ends_it_after_the_run_with_no_next_run(outcome: str) -> None:
    # Given an every-minute task running its first run
    task = submit(schedule=every(60))
    claim(task, at(1))
    # When a user cancels it
    task.request_cancel(USER, at(2))
    # Then the run is asked to stop and the task keeps running meanwhile
    assert (task.status, task.cancel_requested) == (Status.RUNNING, True)
    assert len(of_type(task, EventType.CANCEL_REQUESTED)) == 1
    # When the run ends either way
    if outcome == "succeed":
        task.succeed(1, WORKER, None, at(3))
    else:
        task.fail(1, WORKER, BOOM, at(3), jitter=0.0)
    # Then the task is cancelled, no next run is scheduled or queued
    assert task.status is Status.CANCELLED
    assert (task.next_run_at, task.next_slot_at, task.wake_at) == (None, None, None)
    assert of_type(task, EventType.SCHEDULED) == []
    assert of_type(task, EventType.QUEUED) == []


def test_a_slot_falling_due_after_a_cancel_was_requested_starts_no_run() -> None:
    # Given an every-10-s task (overlap: allow) whose running run was asked to stop
    task = submit(schedule=every(10), overlap="allow")
    claim(task, at(1))
    task.request_cancel(USER, at(5))
    task = new(task)
    # When its next slot falls due before the executor has stopped the run
    child = None
    with contextlib.suppress(IllegalTransition):  # not acting on the slot at all would be fine too
        child = due(task, at(10))
    # Then no new run is spawned
    assert child is None
    assert of_type(task, EventType.RUN_SPAWNED) == []


# ------------------------------------------------------------------------------------------------ expiry
def test_a_scheduled_repeating_task_past_expires_at_expires_when_found_due() -> None:
    # Given an every-minute task expiring at T0+90s, waiting for its slot at T0+120s after its second run
    task = submit(schedule=every(60), expires_at=at(90).isoformat())
    run_ok(task, at(1))
    due(task, at(60))
    run_ok(task, at(61))
    task = new(task)
    # Then the scheduler wakes for the expiry, before the next slot
    assert (task.status, task.next_run_at, task.wake_at) == (Status.SCHEDULED, at(120), at(90))
    # When it is found due then
    due(task, at(90))
    # Then it expires: no run is queued and nothing is left to wake for
    assert task.status is Status.EXPIRED
    assert [e.type for e in task.pending_events] == [EventType.EXPIRED]
    assert task.wake_at is None


# ------------------------------------------------------------------------------------------------- PATCH
def changes(**body: Any) -> dict[str, Any]:
    """The domain changes of a PATCH body, validated as the gateway validates it."""
    return UpdateTask.model_validate(body).changes()


def test_changing_the_schedule_of_a_scheduled_task_recomputes_its_next_run() -> None:
    # Given an every-10-s task starting in an hour
    task = submit(schedule=every(10, start_at=at(3600)))
    # When its schedule becomes a five-minute cron
    task.update(changes(schedule={"cron": "*/5 * * * *"}), USER, at(1))
    # Then it waits for the cron's first slot instead, and the update records it
    assert task.status is Status.SCHEDULED
    assert task.next_run_at == task.next_slot_at == at(300)
    (updated,) = of_type(task, EventType.UPDATED)
    assert updated.data["next_run_at"] == at(300)
    assert task.wake_at == at(300)


def test_changing_a_scheduled_repeating_task_to_a_one_shot_time_waits_for_that_time() -> None:
    # Given an every-minute task waiting for its next slot
    task = submit(schedule=every(60))
    run_ok(task, at(1))
    # When its schedule becomes a single run in two hours
    task.update(changes(schedule={"at": at(7200).isoformat()}), USER, at(2))
    # Then it waits for that time and has no slots any more
    assert (task.next_run_at, task.next_slot_at) == (at(7200), None)
    assert not task.is_repeating


@pytest.mark.parametrize("state", ["queued", "running"])
def test_the_schedule_of_a_one_shot_task_cannot_change_once_it_is_queued_or_running(state: str) -> None:
    # Given a one-shot task queued (or running)
    task = submit()
    if state == "running":
        claim(task, at(1))
    before = copy.deepcopy(task)
    # When / Then giving it a schedule is refused, and nothing changes
    with pytest.raises(IllegalTransition):
        task.update(changes(schedule=every(60)), USER, at(2))
    assert task == before


def test_a_running_repeating_task_cannot_become_a_one_shot_task() -> None:
    # Given a repeating task running a run
    task = submit(schedule=every(60))
    claim(task, at(1))
    before = copy.deepcopy(task)
    # When / Then changing its schedule to a single time is refused
    with pytest.raises(IllegalTransition):
        task.update(changes(schedule={"at": at(3600).isoformat()}), USER, at(2))
    assert task == before


def test_a_running_repeating_task_may_change_to_another_repeating_schedule() -> None:
    # Given an every-minute task running its first run
    task = submit(schedule=every(60))
    claim(task, at(1))
    # When its interval becomes 25 s
    task.update(changes(schedule=every(25)), USER, at(2))
    # Then the run goes on and the next slot follows the new interval
    assert task.status is Status.RUNNING
    assert task.next_slot_at == at(25)
    task.succeed(1, WORKER, None, at(3))
    assert task.next_run_at == at(25)


@pytest.mark.parametrize("state", ["scheduled", "running"])
def test_a_new_schedule_with_no_slot_left_is_refused(state: str) -> None:
    # Given a repeating task waiting for (or running) a run
    task = submit(schedule=every(60))
    claim(task, at(1))
    if state == "scheduled":
        task.succeed(1, WORKER, None, at(2))
    before = copy.deepcopy(task)
    # When / Then a schedule that ended before now is refused, and nothing changes
    with pytest.raises(InvalidSchedule):
        task.update(changes(schedule=every(60, start_at=at(-7200), end_at=at(-3600))), USER, at(3))
    assert task == before


def test_payload_and_priority_changes_apply_to_the_next_run() -> None:
    # Given an every-minute task waiting for its next slot
    task = submit(schedule=every(60), payload={"v": 1})
    run_ok(task, at(1))
    # When its payload and priority change
    task.update(changes(payload={"v": 2}, priority="low"), USER, at(2))
    (updated,) = of_type(task, EventType.UPDATED)
    assert updated.data["fields"] == ["payload", "priority"]
    task = new(task)
    # Then the next run is queued with them, on its slot as before
    due(task, at(60))
    (queued,) = of_type(task, EventType.QUEUED)
    assert queued.data["priority"] == Priority.LOW.value
    assert queued.data["scheduled_for"] == at(60)
    assert task.payload == {"v": 2}
