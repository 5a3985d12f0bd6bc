"""The pause rules: whether a task may be paused, and what a pause withdraws. Pure functions of values; the task
aggregate applies them (``recurrence.after_pause`` says where a resumed task goes on)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tqcore.domain.errors import IllegalTransition
from tqcore.domain.model import Status


def check(*, repeating: bool, status: Status, cancel_requested: bool) -> None:
    """``IllegalTransition`` unless the task may be paused: it repeats, has not ended and is not being cancelled."""
    if not repeating:
        raise IllegalTransition("only a repeating task can be paused")
    if status.is_terminal:
        raise IllegalTransition(f"a {status.value} task cannot be paused", status=status.value)
    if cancel_requested:
        raise IllegalTransition("the task is being cancelled")


@dataclass(frozen=True)
class Withdrawal:
    """The attempt a pause withdrew (it never starts: its message, if one is on the way, is refused at the claim,
    the task being no longer ``queued``, and a later enqueue is another one)."""

    #: What was withdrawn, for the ``paused`` event.
    data: dict[str, Any]
    #: The slot given back (the task's next slot is that one again), or ``None``: the run ends.
    slot: datetime | None


def withdraw(
    status: Status,
    attempts: int,
    run_slot: datetime | None,
    next_slot_at: datetime | None,
    run_id: str,
    now: datetime,
) -> Withdrawal | None:
    """What pausing a task with no attempt running withdraws (``None`` if no attempt waits to start).

    A run not started gives its slot back: it runs if the task is resumed before it, else it is among the slots
    skipped while paused. That holds only for the slot's own run: one whose slot is still ahead, or one the
    schedule has slots after (the task's next slot then lies beyond it). A run whose earlier attempts failed
    ends, and so does a run redriven after its schedule ended (its slot is long past and none follows: giving
    it back would have the resume record a stale slot as skipped)."""
    if status not in (Status.QUEUED, Status.RETRYING):
        return None
    data: dict[str, Any] = {"attempt": attempts + 1, "run_id": run_id}
    own_slot = run_slot is not None and (next_slot_at is not None or run_slot > now)
    if attempts == 0 and status is Status.QUEUED and own_slot:
        data["scheduled_for"] = run_slot
        return Withdrawal(data, run_slot)
    return Withdrawal(data, None)


def paused_data(next_slot_at: datetime | None, withdrawal: Withdrawal | None) -> dict[str, Any]:
    """The ``paused`` event's data: the task's next slot, and what was withdrawn."""
    data: dict[str, Any] = {"next_slot_at": next_slot_at}
    if withdrawal is not None:
        data["withdrawn"] = withdrawal.data
    return data
