"""Pausing and resuming a repeating task: no slot runs while it is paused, a run under way finishes, and the
slots that passed are recorded as skipped when it resumes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.domain.attempts import enqueue_token
from tqcore.domain.commands import SubmitTask, UpdateTask
from tqcore.domain.errors import IllegalTransition, StaleAttempt
from tqcore.domain.model import ErrorInfo, EventType, Status
from tqcore.domain.task import Task

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
WORKER = "host-a:101"
USER = "alice"
DEADLINE_S = 3600.0


def at(seconds: float) -> datetime:
    """``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def submit(**body: Any) -> Task:
    """An accepted task (submitted at T0) with its submit events committed."""
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", **body})
    return Task.submit(
        task_id="t-1", owner=USER, now=T0, submitted=cmd.model_dump(mode="json"), **cmd.task_fields()
    ).committed()


def waiting(every_s: float = 10) -> Task:
    """An interval task that ran its first slot (T0) and waits for its next one (T0 + ``every_s``)."""
    task = submit(schedule={"every_s": every_s})
    task.claim(1, WORKER, at(1), 30)
    task.succeed(1, WORKER, None, at(2))
    assert (task.status, task.next_run_at) == (Status.SCHEDULED, at(every_s))
    return task.committed()


def types(task: Task) -> list[EventType]:
    return [event.type for event in task.pending_events]


# ------------------------------------------------------------------------------------------------- pause
def test_pausing_a_waiting_task_takes_it_out_of_the_schedulers_sight() -> None:
    # Given an every-10-s task waiting for its slot at T0+10s
    task = waiting()
    # When a user pauses it
    task.pause(USER, at(5))
    # Then it is paused, by that user, with nothing to wake for
    assert (task.status, task.paused_at, task.next_run_at, task.wake_at) == (Status.PAUSED, at(5), None, None)
    (paused,) = task.pending_events
    assert (paused.type, paused.actor, paused.data) == (EventType.PAUSED, USER, {"next_slot_at": at(10)})
    # And it cannot be found due, even long after its slot
    with pytest.raises(IllegalTransition):
        task.on_due(at(100), starting_deadline_s=DEADLINE_S)


def test_pausing_twice_changes_nothing() -> None:
    task = waiting()
    task.pause(USER, at(5))
    task = task.committed()
    task.pause(USER, at(6))
    assert (task.status, task.paused_at, task.pending_events) == (Status.PAUSED, at(5), [])


@pytest.mark.parametrize(
    "body",
    [{}, {"schedule": {"at": at(60).isoformat()}}],
    ids=["run now", "one shot at a time"],
)
def test_a_task_that_does_not_repeat_cannot_be_paused(body: dict[str, Any]) -> None:
    task = submit(**body)
    with pytest.raises(IllegalTransition, match="only a repeating task"):
        task.pause(USER, at(1))


@pytest.mark.parametrize("end", ["cancel", "expire"])
def test_an_ended_task_cannot_be_paused(end: str) -> None:
    task = submit(schedule={"every_s": 10}, expires_at=at(15).isoformat())
    task.claim(1, WORKER, at(1), 30)
    task.succeed(1, WORKER, None, at(2))
    if end == "cancel":
        task.request_cancel(USER, at(3))
    else:
        task.on_due(at(15), starting_deadline_s=DEADLINE_S)
    assert task.status.is_terminal
    with pytest.raises(IllegalTransition):
        task.pause(USER, at(20))


def test_a_task_being_cancelled_cannot_be_paused() -> None:
    task = submit(schedule={"every_s": 10})
    task.claim(1, WORKER, at(1), 30)
    task.request_cancel(USER, at(2))
    with pytest.raises(IllegalTransition, match="cancelled"):
        task.pause(USER, at(3))


def test_a_run_under_way_finishes_and_then_the_task_is_paused() -> None:
    # Given an every-10-s task whose first run is running
    task = submit(schedule={"every_s": 10})
    task.claim(1, WORKER, at(1), 30)
    # When a user pauses it
    task.pause(USER, at(2))
    # Then the run goes on, and a slot falling due meanwhile is not acted on
    assert (task.status, task.worker, task.paused_at) == (Status.RUNNING, WORKER, at(2))
    assert task.wake_at is None
    # When the run succeeds after its next slot
    task.succeed(1, WORKER, {"ok": True}, at(12))
    # Then the task is paused, not scheduled, and nothing was queued
    assert (task.status, task.next_run_at, task.wake_at, task.run_count) == (Status.PAUSED, None, None, 1)
    assert EventType.SCHEDULED not in types(task)
    assert EventType.QUEUED not in types(task)


def staged(every_s: float = 10) -> Task:
    """An interval task whose slot at T0 + ``every_s`` the scheduler staged 4 s ahead: committed ``queued`` as of
    the slot, its message sent when the slot comes."""
    task = waiting(every_s)
    task.on_due(at(every_s), starting_deadline_s=DEADLINE_S)
    assert (task.status, task.queued_at, task.run_slot) == (Status.QUEUED, at(every_s), at(every_s))
    return task.committed()


def test_pausing_a_run_staged_ahead_of_its_slot_withdraws_it_and_gives_the_slot_back() -> None:
    # Given the run of the slot at T0+10s staged (queued as of T0+10s), its message on the way
    task = staged()
    message = (task.attempts + 1, task.run_no, enqueue_token(task.queued_at, task.poison_strikes))
    # When a user pauses the task at T0+7s
    task.pause(USER, at(7))
    # Then it is paused at once, with nothing to wake for, and its next slot is the staged one again
    assert (task.status, task.next_run_at, task.wake_at, task.next_slot_at) == (Status.PAUSED, None, None, at(10))
    (paused,) = task.pending_events
    assert paused.data == {
        "next_slot_at": at(10),
        "withdrawn": {"attempt": 1, "run_id": "2.1", "scheduled_for": at(10)},
    }
    # And the staged message, arriving at T0+10s, cannot start the run
    attempt, run, enqueue = message
    with pytest.raises(IllegalTransition):
        task.claim(attempt, WORKER, at(10), 30, run=run, enqueue=enqueue)


@pytest.mark.parametrize(
    ("resumed_s", "next_run_s", "skipped"),
    [(8, 10, None), (25, 30, {"reason": "paused", "count": 2, "first": at(10), "last": at(20)})],
    ids=["before the slot", "after it"],
)
def test_a_withdrawn_slot_runs_if_resumed_before_it_else_it_is_skipped(
    resumed_s: float, next_run_s: float, skipped: dict[str, Any] | None
) -> None:
    task = staged()
    task.pause(USER, at(7))
    task = task.committed()
    task.resume(USER, at(resumed_s))
    assert (task.status, task.next_run_at) == (Status.SCHEDULED, at(next_run_s))
    assert [e.data for e in task.pending_events if e.type is EventType.RUN_SKIPPED] == ([skipped] if skipped else [])


def withdrawn_then_restaged() -> tuple[Task, str | None]:
    """A staged run (slot T0+10s) withdrawn by a pause at T0+7s, the task resumed at T0+12s and the run of its
    next slot (T0+20s) staged, queued as of T0+20s: the same run and attempt numbers, another enqueue. The task,
    and the withdrawn enqueue's token."""
    task = staged()
    stale = enqueue_token(task.queued_at, task.poison_strikes)
    task.pause(USER, at(7))
    task.resume(USER, at(12))
    task.on_due(at(20), starting_deadline_s=DEADLINE_S)
    task = task.committed()
    assert (task.status, task.run_no, task.attempts, task.poison_strikes) == (Status.QUEUED, 2, 0, 0)
    return task, stale


def test_the_message_of_a_withdrawn_run_cannot_start_the_run_queued_after_the_resume() -> None:
    # Given a staged run withdrawn by a pause, and after the resume the same run and attempt queued for the next slot
    task, stale = withdrawn_then_restaged()
    # Then the withdrawn enqueue's message is refused, the new one's taken
    with pytest.raises(StaleAttempt, match="withdrawn"):
        task.claim(1, WORKER, at(20), 30, run=2, enqueue=stale)
    task.claim(1, WORKER, at(20), 30, run=2, enqueue=enqueue_token(task.queued_at, task.poison_strikes))
    assert task.status is Status.RUNNING


def test_the_dead_lettered_message_of_a_withdrawn_run_is_not_taken_for_the_run_queued_after_the_resume() -> None:
    # Given a staged run withdrawn by a pause, and after the resume the run of the next slot (T0+20s) staged
    task, stale = withdrawn_then_restaged()
    # When SQS dead-letters the withdrawn enqueue's message and the reaper settles it at T0+16s
    with pytest.raises(StaleAttempt, match="withdrawn"):
        task.poisoned(1, 5, at(16), strikes_allowed=3, run=2, enqueue=stale)
    # Then the task's own run is untouched: no strike, no fresh message
    assert (task.status, task.poison_strikes, task.pending_events) == (Status.QUEUED, 0, [])
    # And a dead letter of the live enqueue still counts
    task.poisoned(1, 5, at(21), strikes_allowed=3, run=2, enqueue=enqueue_token(task.queued_at, 0))
    assert (task.poison_strikes, types(task)) == (1, [EventType.QUEUED])


@pytest.mark.parametrize("drift_ms", [-1, 0, 1])
def test_a_message_of_the_current_enqueue_is_claimed_whatever_its_rounding(drift_ms: int) -> None:
    # The producer rounds its own (microsecond) copy of queued_at; the stored one has milliseconds.
    task = staged()
    token = enqueue_token(task.queued_at + timedelta(milliseconds=drift_ms), task.poison_strikes)
    task.claim(1, WORKER, at(10), 30, run=2, enqueue=token)
    assert task.status is Status.RUNNING


@pytest.mark.parametrize("enqueue", [None, "v7", "q-junk"], ids=["older producer", "no enqueue", "unreadable"])
def test_a_message_that_names_no_readable_enqueue_is_fenced_by_run_and_attempt_alone(enqueue: str | None) -> None:
    task = staged()
    task.claim(1, WORKER, at(10), 30, run=2, enqueue=enqueue)
    assert task.status is Status.RUNNING


def test_pausing_a_due_run_not_yet_claimed_withdraws_it() -> None:
    # Given the run of the slot at T0+10s queued at T0+10s, waiting for an executor
    task = waiting()
    task.on_due(at(10), starting_deadline_s=DEADLINE_S)
    task = task.committed()
    # When a user pauses the task at T0+11s, then resumes it at T0+25s
    task.pause(USER, at(11))
    assert (task.status, task.next_slot_at) == (Status.PAUSED, at(10))
    task.resume(USER, at(25))
    # Then the withdrawn slot is among those skipped while paused
    skipped = [e.data for e in task.pending_events if e.type is EventType.RUN_SKIPPED]
    assert skipped == [{"reason": "paused", "count": 2, "first": at(10), "last": at(20)}]
    assert task.next_run_at == at(30)


def ended_and_redriven() -> Task:
    """A task repeating every 10 s until T0+15s whose last run (slot T0+10s) failed for good (no slot left, so the
    task failed), redriven at T0+30s: queued, attempt 1 of a new run, its ``run_slot`` still the old slot."""
    task = submit(schedule={"every_s": 10, "end_at": at(15).isoformat()}, retry={"max_retries": 0})
    task.claim(1, WORKER, at(1), 30)
    task.succeed(1, WORKER, None, at(2))
    task.on_due(at(10), starting_deadline_s=DEADLINE_S)
    task.claim(1, WORKER, at(10), 30, run=2)
    task.fail(1, WORKER, ErrorInfo("ValueError", "boom"), at(11), jitter=0.0)
    assert (task.status, task.next_slot_at) == (Status.FAILED, None)
    task.redrive(USER, at(30))
    assert (task.status, task.attempts, task.run_slot) == (Status.QUEUED, 0, at(10))
    return task.committed()


def test_pausing_a_redriven_run_of_an_ended_schedule_gives_back_no_old_slot() -> None:
    # Given a repeating task whose schedule had ended, redriven and queued
    task = ended_and_redriven()
    # When a user pauses it before an executor claims the run
    task.pause(USER, at(31))
    # Then the redriven run ends (it was no slot's run), and the task holds no slot
    assert (task.status, task.next_slot_at, task.wake_at, task.attempts) == (Status.PAUSED, None, None, 0)
    assert task.pending_events[0].data == {"next_slot_at": None, "withdrawn": {"attempt": 1, "run_id": "3.1"}}
    # And a resume ends the task with no slot said to be skipped
    task = task.committed()
    task.resume(USER, at(40))
    assert task.status is Status.EXPIRED
    assert EventType.RUN_SKIPPED not in types(task)


@pytest.mark.parametrize(
    ("resumed_s", "status", "skipped"),
    [
        (13, Status.SCHEDULED, None),
        (25, Status.EXPIRED, {"reason": "paused", "count": 1, "first": at(20), "last": at(20)}),
    ],
    ids=["resumed before the slot", "after it"],
)
def test_pausing_the_last_slot_staged_ahead_gives_it_back(
    resumed_s: float, status: Status, skipped: dict[str, Any] | None
) -> None:
    # Given a task repeating every 10 s until T0+25s, the run of its last slot (T0+20s) staged
    task = submit(schedule={"every_s": 10, "end_at": at(25).isoformat()})
    task.claim(1, WORKER, at(1), 30)
    task.succeed(1, WORKER, None, at(2))
    task.on_due(at(10), starting_deadline_s=DEADLINE_S)
    task.claim(1, WORKER, at(10), 30, run=2)
    task.succeed(1, WORKER, None, at(11))
    task.on_due(at(20), starting_deadline_s=DEADLINE_S)
    assert (task.status, task.run_slot, task.next_slot_at) == (Status.QUEUED, at(20), None)
    # When a user pauses it before the slot, then resumes it
    task.pause(USER, at(17))
    assert task.next_slot_at == at(20)
    task = task.committed()
    task.resume(USER, at(resumed_s))
    # Then the slot runs if resumed before it, else it is recorded as skipped and the task ends
    assert task.status is status
    assert task.next_run_at == (at(20) if status is Status.SCHEDULED else None)
    assert [e.data for e in task.pending_events if e.type is EventType.RUN_SKIPPED] == ([skipped] if skipped else [])


@pytest.mark.parametrize("retry_queued", [False, True], ids=["waiting for its backoff", "retry queued"])
def test_pausing_between_the_attempts_of_a_run_ends_the_run(retry_queued: bool) -> None:
    # Given a run whose first attempt failed and whose retry waits (or is queued)
    task = submit(schedule={"every_s": 10}, retry={"max_retries": 3})
    task.claim(1, WORKER, at(1), 30)
    task.fail(1, WORKER, ErrorInfo("ValueError", "boom"), at(2), jitter=0.0)
    assert task.status is Status.RETRYING
    if retry_queued:
        assert task.next_run_at is not None
        task.on_due(task.next_run_at, starting_deadline_s=DEADLINE_S)
        assert task.status is Status.QUEUED
    task = task.committed()
    # When a user pauses the task
    task.pause(USER, at(5))
    # Then the retry never starts: the run is over, the task paused with nothing to wake for
    assert (task.status, task.wake_at, task.run_count, task.attempts) == (Status.PAUSED, None, 1, 0)
    assert task.pending_events[0].data == {"next_slot_at": at(10), "withdrawn": {"attempt": 2, "run_id": "1.2"}}
    with pytest.raises(IllegalTransition):
        task.claim(2, WORKER, at(6), 30, run=1)
    # And on resume the schedule goes on with its next slot
    task.resume(USER, at(6))
    assert (task.status, task.next_run_at) == (Status.SCHEDULED, at(10))


def test_an_attempt_failing_while_paused_is_not_retried() -> None:
    # Given a running attempt with retries left, its task paused
    task = submit(schedule={"every_s": 10}, retry={"max_retries": 3})
    task.claim(1, WORKER, at(1), 30)
    task.pause(USER, at(2))
    task = task.committed()
    # When it fails
    task.fail(1, WORKER, ErrorInfo("ValueError", "boom"), at(3), jitter=0.0)
    # Then the failure is recorded, no retry follows, and the task is paused
    (failed,) = task.pending_events
    assert (failed.type, failed.data["retryable"], failed.data["paused"]) == (EventType.FAILED, False, True)
    assert (task.status, task.wake_at, task.run_count, task.worker, task.claim_seq) == (
        Status.PAUSED,
        None,
        1,
        None,
        None,
    )


def test_an_attempt_given_back_while_paused_is_not_queued_again() -> None:
    task = submit(schedule={"every_s": 10})
    task.claim(1, WORKER, at(1), 30)
    task.pause(USER, at(2))
    task.release(1, WORKER, at(3))
    assert (task.status, task.wake_at) == (Status.PAUSED, None)
    assert EventType.QUEUED not in types(task)


def test_a_run_dead_lettered_while_paused_leaves_the_task_paused() -> None:
    task = submit(schedule={"every_s": 10}, retry={"max_retries": 0})
    task.claim(1, WORKER, at(1), 30)
    task.pause(USER, at(2))
    task.fail(1, WORKER, ErrorInfo("ValueError", "boom"), at(3), jitter=0.0)
    assert task.status is Status.PAUSED
    assert task.pending_events[-1].data["schedule_continues"] is True


def test_pausing_drops_the_run_waiting_for_the_current_one() -> None:
    # Given an overlap: queue task whose slot at T0+10s waits for the running run
    task = submit(schedule={"every_s": 10}, overlap="queue")
    task.claim(1, WORKER, at(1), 30)
    task.on_due(at(10), starting_deadline_s=DEADLINE_S)
    assert task.waiting_slot == at(10)
    task = task.committed()
    # When a user pauses it
    task.pause(USER, at(11))
    # Then the waiting run is recorded as skipped, and none starts when the current run ends
    assert types(task) == [EventType.PAUSED, EventType.RUN_SKIPPED]
    assert task.pending_events[1].data == {"reason": "paused", "scheduled_for": at(10)}
    task.succeed(1, WORKER, None, at(12))
    assert task.status is Status.PAUSED


# ------------------------------------------------------------------------------------------------ resume
def test_resuming_goes_on_with_the_next_slot_and_records_the_missed_ones_as_skipped() -> None:
    # Given an every-10-s task paused at T0+5s (its next slot T0+10s)
    task = waiting()
    task.pause(USER, at(5))
    task = task.committed()
    # When a user resumes it at T0+47s (slots 10, 20, 30 and 40 passed)
    task.resume(USER, at(47))
    # Then it waits for T0+50s, and the four slots are one run_skipped event
    assert (task.status, task.next_run_at, task.wake_at, task.paused_at) == (Status.SCHEDULED, at(50), at(50), None)
    assert types(task) == [EventType.RESUMED, EventType.RUN_SKIPPED, EventType.SCHEDULED]
    resumed, skipped, _ = task.pending_events
    assert (resumed.actor, resumed.data) == (USER, {"paused_at": at(5)})
    assert skipped.actor == USER
    assert skipped.data == {"reason": "paused", "count": 4, "first": at(10), "last": at(40)}
    # And the run at T0+50s is queued for that slot
    task = task.committed()
    task.on_due(at(50), starting_deadline_s=DEADLINE_S)
    assert task.status is Status.QUEUED
    assert task.run_slot == at(50)


def test_resuming_before_the_next_slot_skips_nothing() -> None:
    task = waiting()
    task.pause(USER, at(5))
    task.resume(USER, at(8))
    assert (task.status, task.next_run_at) == (Status.SCHEDULED, at(10))
    assert EventType.RUN_SKIPPED not in types(task)


def test_resuming_while_the_paused_run_still_goes_lets_the_schedule_go_on_after_it() -> None:
    # Given a running task paused during its run, resumed after the slot at T0+10s passed
    task = submit(schedule={"every_s": 10})
    task.claim(1, WORKER, at(1), 30)
    task.pause(USER, at(2))
    task.resume(USER, at(13))
    # Then the slot passed while paused is skipped, the scheduler wakes again at the next one
    assert task.status is Status.RUNNING
    assert task.pending_events[-1].data == {"reason": "paused", "count": 1, "first": at(10), "last": at(10)}
    assert task.wake_at == at(20)
    # And when the run ends the task waits for it
    task.succeed(1, WORKER, None, at(14))
    assert (task.status, task.next_run_at) == (Status.SCHEDULED, at(20))


def test_a_task_whose_schedule_ended_while_paused_expires_on_resume() -> None:
    task = submit(schedule={"every_s": 10, "end_at": at(25).isoformat()})
    task.claim(1, WORKER, at(1), 30)
    task.succeed(1, WORKER, None, at(2))
    task.pause(USER, at(5))
    task.resume(USER, at(60))
    assert task.status is Status.EXPIRED
    assert task.pending_events[-2].data == {"reason": "paused", "count": 2, "first": at(10), "last": at(20)}


@pytest.mark.parametrize("state", ["scheduled", "running"])
def test_only_a_paused_task_can_be_resumed(state: str) -> None:
    task = waiting()
    if state == "running":
        task.on_due(at(10), starting_deadline_s=DEADLINE_S)
        task.claim(1, WORKER, at(11), 30)
    with pytest.raises(IllegalTransition, match="not paused"):
        task.resume(USER, at(12))


def test_a_paused_task_can_be_cancelled() -> None:
    task = waiting()
    task.pause(USER, at(5))
    task.request_cancel(USER, at(6))
    assert (task.status, task.paused_at, task.next_slot_at, task.wake_at) == (Status.CANCELLED, None, None, None)


# ------------------------------------------------------------------------------------------------- PATCH
def test_a_new_schedule_of_a_paused_task_takes_effect_on_resume() -> None:
    # Given a paused every-10-s task
    task = waiting()
    task.pause(USER, at(5))
    # When its schedule changes to every 60 s
    task.update(UpdateTask.model_validate({"schedule": {"every_s": 60}}).changes(), USER, at(6))
    # Then it stays paused, with no run to wake for
    assert (task.status, task.next_run_at, task.wake_at) == (Status.PAUSED, None, None)
    # And on resume it goes on with the new schedule's next slot
    task.resume(USER, at(30))
    assert (task.status, task.next_run_at) == (Status.SCHEDULED, at(60))


@pytest.mark.parametrize("schedule", [None, {"at": at(60).isoformat()}], ids=["none", "one shot"])
def test_a_paused_task_cannot_stop_repeating(schedule: dict[str, Any] | None) -> None:
    task = waiting()
    task.pause(USER, at(5))
    with pytest.raises(IllegalTransition, match="resume it first"):
        task.update(UpdateTask.model_validate({"schedule": schedule}).changes(), USER, at(6))
