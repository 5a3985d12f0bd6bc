"""Pausing and resuming a repeating task: no slot runs while it is paused, a run under way finishes, and the
slots that passed are recorded as skipped when it resumes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.domain.commands import SubmitTask, UpdateTask
from tqcore.domain.errors import IllegalTransition
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
