"""A task's recurrence: when it first runs, when the scheduler must look at it, how a repeating task catches up
after downtime, what a slot that falls due during a run does, and what a new schedule changes.

Pure functions of values (slot arithmetic is ``schedules``'); the task aggregate applies their answers and
records the events.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tqcore.domain import schedules
from tqcore.domain.errors import IllegalTransition, InvalidSchedule
from tqcore.domain.model import Overlap, Schedule, Status

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: States in which a run is under way (queued, running, or waiting out a retry's backoff).
BUSY = frozenset({Status.QUEUED, Status.RUNNING, Status.RETRYING})


def first_run(
    schedule: Schedule | None, created_at: datetime, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """When a new task first runs (``None``: now) and, if it repeats, that first slot; ``InvalidSchedule`` if
    it never would."""
    if schedule is None:
        return None, None
    if schedule.at is not None:
        return schedule.at, None
    first = schedules.first_slot(schedule, created_at, now)
    if first is None:
        raise InvalidSchedule("the schedule has no run left: nothing matches before its end_at")
    return first, first


def first_slot_of(schedule: Schedule | None, created_at: datetime, now: datetime) -> datetime:
    """A new repeating schedule's first slot from ``now``; ``InvalidSchedule`` if none is left."""
    assert schedule is not None
    first = schedules.first_slot(schedule, created_at, now)
    if first is None:
        raise InvalidSchedule("the new schedule has no run left: nothing matches before its end_at")
    return first


def wake_at(
    status: Status, next_run_at: datetime | None, expires_at: datetime | None, busy_slot: datetime | None
) -> datetime | None:
    """When the scheduler must next look at a task (the ``due`` index's time), ``None`` if never.

    A waiting task wakes for its run (or retry) or its expiry; a repeating task with a run under way also wakes
    at its next slot (``busy_slot``), to skip it, keep it waiting or spawn it, as its ``overlap`` says.
    """
    times = []
    if status in (Status.SCHEDULED, Status.RETRYING) and next_run_at is not None:
        times.append(next_run_at)
    if status is Status.SCHEDULED and expires_at is not None:
        times.append(expires_at)
    if busy_slot is not None:
        times.append(busy_slot)
    return min(times) if times else None


class Due(enum.Enum):
    """What the scheduler does with a task whose ``wake_at`` has passed."""

    #: Not started before ``expires_at``: it ends ``expired``.
    EXPIRE = "expire"
    #: A repeating task's slot came: it catches up and starts that run (or waits for its next slot).
    REPEAT = "repeat"
    #: A one-shot run or a retry came due: it is queued.
    PROMOTE = "promote"
    #: No run of its own is due (a slot falling due during a run may be).
    OTHER = "other"


def due(status: Status, next_run_at: datetime | None, expired: bool, repeating: bool, now: datetime) -> Due:
    """What a task found due does: expire, start a repeating task's run, queue a run or retry, or else."""
    if status is Status.SCHEDULED and expired:
        return Due.EXPIRE
    run_due = next_run_at is not None and next_run_at <= now
    if not run_due or status not in (Status.SCHEDULED, Status.RETRYING):
        return Due.OTHER
    if expired:  # a retry due after expires_at
        return Due.EXPIRE
    return Due.REPEAT if status is Status.SCHEDULED and repeating else Due.PROMOTE


@dataclass(frozen=True)
class CatchUp:
    """A repeating task moved past every slot up to now (after downtime it runs once, not once per slot)."""

    #: The latest slot passed, if it may still start (``None``: older than the starting deadline).
    slot: datetime | None
    #: The first slot after now (``None`` once the schedule ends).
    next_slot_at: datetime | None
    #: The ``run_skipped`` event's data when slots were passed over without a run.
    skipped: dict[str, Any] | None


def catch_up(
    schedule: Schedule, created_at: datetime, first: datetime, now: datetime, starting_deadline_s: float
) -> CatchUp:
    """Every slot from ``first`` up to ``now``: the latest runs if it is at most ``starting_deadline_s`` old."""
    latest, count = schedules.latest_slot(schedule, created_at, first, now)
    on_time = (now - latest).total_seconds() <= starting_deadline_s
    skipped = None
    if count > 1 or not on_time:
        skipped = {
            "reason": "catch_up" if on_time else "starting_deadline",
            "count": count - 1 if on_time else count,
            "first": first,
            "last": latest if not on_time else None,
            "starting_deadline_s": starting_deadline_s,
        }
    return CatchUp(latest if on_time else None, schedules.next_slot(schedule, created_at, now), skipped)


def after_pause(
    schedule: Schedule, created_at: datetime, first: datetime | None, now: datetime
) -> tuple[datetime | None, dict[str, Any] | None]:
    """Where a task resumed at ``now`` goes on: its first slot after ``now``, and the ``run_skipped`` event's data
    for the slots from ``first`` (its next slot when it was paused) up to ``now`` (``None`` if none passed)."""
    if first is None:  # the schedule had ended already
        return None, None
    skipped = None
    if first <= now:
        latest, count = schedules.latest_slot(schedule, created_at, first, now)
        skipped = {"reason": "paused", "count": count, "first": first, "last": latest}
    return schedules.next_slot(schedule, created_at, max(now, first - timedelta(milliseconds=1))), skipped


class WhileBusy(enum.Enum):
    """What a slot that falls due while a run is under way does."""

    #: ``overlap: allow``: it runs as a task of its own, beside the run under way.
    SPAWN = "spawn"
    #: ``overlap: queue`` and no run waiting yet: it waits for the run under way to end.
    WAIT = "wait"
    #: ``overlap: skip``, or a run already waits: it is skipped.
    SKIP = "skip"


def while_busy(overlap: Overlap, waiting_slot: datetime | None) -> tuple[WhileBusy, str]:
    """What a slot due during a run does, and why it is skipped when it is."""
    if overlap is Overlap.ALLOW:
        return WhileBusy.SPAWN, ""
    if overlap is Overlap.QUEUE and waiting_slot is None:
        return WhileBusy.WAIT, ""
    return WhileBusy.SKIP, "previous run still going" if overlap is Overlap.SKIP else "a run is already waiting"


def spawned_id(parent_id: str, slot: datetime) -> str:
    """The id of the task running ``slot`` of ``parent_id`` beside its run: derived from the slot, so schedulers
    racing to spawn it create it once."""
    return f"{parent_id}-{(slot - EPOCH) // timedelta(milliseconds=1)}"


@dataclass(frozen=True)
class Rescheduled:
    """What a new schedule changes: the next slot, and the next run (``keep_next_run``: a run is under way)."""

    next_slot_at: datetime | None
    next_run_at: datetime | None
    keep_next_run: bool = False


def reschedule(
    schedule: Schedule | None,
    created_at: datetime,
    now: datetime,
    status: Status,
    was_repeating: bool,
    run_slot: datetime | None,
) -> Rescheduled:
    """A new schedule takes effect for the next run; a run already under way (``status`` busy, for ``run_slot``
    when it repeats) is not touched."""
    repeating = schedule is not None and schedule.is_repeating
    if status in BUSY:
        if not (was_repeating and repeating):
            raise IllegalTransition(
                f"the task is {status.value}: only a repeating task's schedule can change while it runs"
            )
        # The slot of the run under way (or staged, a little ahead of its time) must not come round again.
        after_run = run_slot + timedelta(milliseconds=1) if run_slot else now
        return Rescheduled(first_slot_of(schedule, created_at, max(now, after_run)), None, keep_next_run=True)
    # Scheduled: the new schedule decides the next run (no schedule: at once, by the scheduler's next pass).
    next_slot = first_slot_of(schedule, created_at, now) if repeating else None
    if schedule is None:
        return Rescheduled(next_slot, now)
    return Rescheduled(next_slot, schedule.at if schedule.at is not None else next_slot)
