"""The task's state, field by field: what the aggregate (``tqcore.domain.task.Task``) changes and the store keeps,
and what can be read off it without changing it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tqcore.domain import attempts, recurrence, schedules
from tqcore.domain.errors import IllegalTransition
from tqcore.domain.model import ErrorInfo, Event, Overlap, Priority, Progress, RetryPolicy, Schedule, Status
from tqcore.domain.recurrence import BUSY

#: Fields a user may change with PATCH.
MUTABLE_FIELDS = frozenset(
    {"payload", "priority", "schedule", "overlap", "expires_at", "retry", "timeout_s", "name", "description"}
)

#: The executor pool of a task whose type names no other (``TQ_POOL`` of an executor; its queues are named without
#: the pool).
DEFAULT_POOL = "default"


@dataclass
class TaskState:
    """A unit of work's whole state; ``version`` counts the events that built it."""

    id: str
    type: str
    group: str
    owner: str
    created_at: datetime
    payload: Any = None
    priority: Priority = Priority.NORMAL
    #: The executor pool whose queues the task is sent to (its type's pool in the catalog when it was submitted).
    pool: str = DEFAULT_POOL
    name: str | None = None
    description: str | None = None
    status: Status = Status.QUEUED
    version: int = 0
    attempts: int = 0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout_s: int = 300
    schedule: Schedule | None = None
    overlap: Overlap = Overlap.SKIP
    expires_at: datetime | None = None
    idempotency_key: str | None = None
    worker: str | None = None
    updated_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    next_run_at: datetime | None = None
    lease_expires_at: datetime | None = None
    run_count: int = 0
    #: Times the current enqueue was sent again because no executor claimed it in time.
    resends: int = 0
    #: Times this run's message was dead-lettered by SQS and sent again (see ``poisoned``).
    poison_strikes: int = 0
    #: Version the current attempt's claim produced: the fencing token every outcome must present, so a
    #: zombie from an earlier run (attempt numbers restart after a redrive) can never record over this one.
    claim_seq: int | None = None
    cancel_requested: bool = False
    #: When a user paused this repeating task (``None`` unless paused). An attempt running when it was paused keeps
    #: the task ``running`` until it ends; the task is ``paused`` from then on.
    paused_at: datetime | None = None
    #: A repeating task's next slot not yet acted on (``None`` for one-shot tasks and once the schedule ends).
    next_slot_at: datetime | None = None
    #: ``overlap: queue``: the slot of the one run waiting for the current run to end.
    waiting_slot: datetime | None = None
    #: The slot the current (or last) run of a repeating task is for.
    run_slot: datetime | None = None
    #: The repeating task that spawned this task as an overlapping run (``overlap: allow``).
    parent_id: str | None = None
    last_error: ErrorInfo | None = None
    result: Any = None
    #: The newest progress report of the current (or, once it ended, the last) attempt; a claim clears it. The
    #: executor writes it beside the snapshot without a new version (the store overlays it on every read).
    progress: Progress | None = None
    #: The W3C trace context (``traceparent``, ``tracestate``) the task's next step continues: its submit's, or
    #: the scheduler's that queued its current run. Metadata for tracing, never a reason for a transition.
    trace_context: dict[str, str] | None = None
    #: Events recorded since the task was loaded, committed together with the snapshot.
    pending_events: list[Event] = field(default_factory=list, repr=False, compare=False)
    #: The claim this change ended (its lease must go with the commit); ``None`` if no claim ended.
    released_claim: int | None = field(default=None, repr=False, compare=False)

    @property
    def retries(self) -> int:
        """Retries started for the current run: ``max(attempts - 1, 0)``."""
        return max(self.attempts - 1, 0)

    @property
    def run_no(self) -> int:
        """1-based number of the current (or next) run of this task."""
        return self.run_count + 1

    def run_id(self, attempt: int) -> str:
        """The id of one attempt of the current run, as listed by ``/runs``."""
        return attempts.run_id(self.run_no, attempt)

    @property
    def is_repeating(self) -> bool:
        """True for interval and cron schedules."""
        return self.schedule is not None and self.schedule.is_repeating

    def _slot_after(self, at: datetime) -> datetime | None:
        """A repeating task's first slot after ``at``."""
        assert self.schedule is not None
        return schedules.next_slot(self.schedule, self.created_at, at)

    def is_expired(self, now: datetime) -> bool:
        """True once ``expires_at`` has passed."""
        return self.expires_at is not None and self.expires_at <= now

    @property
    def _slot_pending_while_busy(self) -> bool:
        """A run is under way and a next slot is coming (none once a cancel was requested)."""
        return (
            self.status in BUSY
            and self.is_repeating
            and self.next_slot_at is not None
            and not self.cancel_requested
            and self.paused_at is None
        )

    @property
    def wake_at(self) -> datetime | None:
        """When the scheduler must next look at the task (the ``due`` index's time), ``None`` if never."""
        busy_slot = self.next_slot_at if self._slot_pending_while_busy else None
        return recurrence.wake_at(self.status, self.next_run_at, self.expires_at, busy_slot)

    def stageable(self) -> bool:
        """True if what falls due next is only a run (or retry) starting at ``next_run_at``: a change the
        scheduler may commit a little ahead, sending the task at its time (see ``tqcore.usecases.scheduling``)."""
        return (
            self.status in (Status.SCHEDULED, Status.RETRYING)
            and self.next_run_at is not None
            and self.wake_at == self.next_run_at
            and not self.is_expired(self.next_run_at)
        )

    def _require(self, *allowed: Status) -> None:
        if self.status not in allowed:
            wanted = " or ".join(s.value for s in allowed)
            raise IllegalTransition(f"task is {self.status.value}, not {wanted}", status=self.status.value)

    def _require_owner(self, attempt: int, worker: str, claim_seq: int | None = None) -> None:
        attempts.check_owner(
            attempt,
            worker,
            claim_seq,
            status=self.status,
            attempts=self.attempts,
            holder=self.worker,
            held_claim=self.claim_seq,
        )
