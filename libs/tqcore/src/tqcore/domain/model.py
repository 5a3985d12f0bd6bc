"""Value objects of the task domain: states, priorities, policies, schedules, errors and events."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any


class Status(enum.StrEnum):
    """Where a task is in its life (contract section 3)."""

    SCHEDULED = "scheduled"  #: waiting for its time (or, for a repeating task, its next run)
    QUEUED = "queued"  #: on a queue, not yet claimed by an executor
    RUNNING = "running"  #: an executor holds the lease and runs an attempt
    RETRYING = "retrying"  #: an attempt failed; waiting out its backoff before the next one
    SUCCEEDED = "succeeded"  #: the last attempt succeeded (terminal)
    FAILED = "failed"  #: retries exhausted, dead-lettered (terminal until redriven)
    CANCELLED = "cancelled"  #: cancelled by a user (terminal)
    EXPIRED = "expired"  #: not started before ``expires_at`` (terminal)
    PAUSED = "paused"  #: a repeating task a user paused: no slot runs until it is resumed

    @property
    def is_terminal(self) -> bool:
        """True for states a task never leaves on its own."""
        return self in _TERMINAL


_TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.EXPIRED})


class Priority(enum.StrEnum):
    """Which queue a task goes to; executors drain high before normal before low."""

    HIGH = "high"  #: drained first
    NORMAL = "normal"  #: the default
    LOW = "low"  #: drained last

    @property
    def rank(self) -> int:
        """0 for the most urgent; the order executors prefer."""
        return list(Priority).index(self)


class Overlap(enum.StrEnum):
    """What a repeating task does when a run falls due while the previous one still runs."""

    SKIP = "skip"  #: skip the due run (recorded as an event)
    QUEUE = "queue"  #: keep at most one run waiting
    ALLOW = "allow"  #: let runs overlap


class RunStatus(enum.StrEnum):
    """The outcome of one attempt."""

    RUNNING = "running"  #: the attempt holds the lease
    SUCCEEDED = "succeeded"  #: the handler returned
    FAILED = "failed"  #: the handler raised or exited non-zero
    TIMED_OUT = "timed_out"  #: the attempt ran past ``timeout_s`` and was stopped
    LOST = "lost"  #: the lease expired: the executor died or stopped heartbeating
    CANCELLED = "cancelled"  #: stopped because the task was cancelled


class EventType(enum.StrEnum):
    """What an event records (contract section 4)."""

    SUBMITTED = "submitted"  #: accepted through the API
    SCHEDULED = "scheduled"  #: waiting for ``next_run_at``
    QUEUED = "queued"  #: put on its priority's queue for the next attempt
    CLAIMED = "claimed"  #: an executor took the lease for an attempt
    SUCCEEDED = "succeeded"  #: an attempt succeeded
    FAILED = "failed"  #: an attempt failed (timed out, lost or raised)
    RETRY_SCHEDULED = "retry_scheduled"  #: another attempt will follow after a backoff
    LEASE_EXPIRED = "lease_expired"  #: the running attempt's lease ran out
    DEAD_LETTERED = "dead_lettered"  #: retries exhausted; the task is ``failed``
    CANCEL_REQUESTED = "cancel_requested"  #: the running attempt is told to stop
    CANCELLED = "cancelled"  #: the task is cancelled
    UPDATED = "updated"  #: fields changed through the API
    EXPIRED = "expired"  #: not started before ``expires_at``
    REDRIVEN = "redriven"  #: a failed task was given a fresh retry budget
    RUN_SKIPPED = "run_skipped"  #: a repeating task's slot(s) did not run: overlap, catch-up or too late
    RUN_WAITING = "run_waiting"  #: ``overlap: queue``: a due run waits for the current one to end
    RUN_SPAWNED = "run_spawned"  #: ``overlap: allow``: a due run started as its own task beside the current one
    PAUSED = "paused"  #: a user paused a repeating task (an attempt running finishes first)
    RESUMED = "resumed"  #: a user resumed a paused task: it waits for its next slot again


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed attempt is retried."""

    max_retries: int = 5
    backoff_base_s: float = 2.0
    backoff_max_s: float = 300.0

    def delay_s(self, retry_number: int, jitter: float) -> float:
        """Delay before retry ``retry_number`` (1-based): the capped exponential with "equal jitter".

        ``jitter`` in [0, 1) takes away at most half of the capped delay, so concurrent failures spread
        out but no retry ever comes sooner than half its nominal delay.
        """
        if retry_number < 1:
            raise ValueError("retry_number starts at 1")
        nominal = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (retry_number - 1))
        return nominal * (1.0 - 0.5 * jitter)


@dataclass(frozen=True)
class Schedule:
    """When a task runs: once ``at`` a time, every ``every_s`` seconds, or on a five-field ``cron`` in a zone."""

    at: datetime | None = None
    every_s: float | None = None
    cron: str | None = None
    timezone: str | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None

    @property
    def is_repeating(self) -> bool:
        """True for interval and cron schedules."""
        return self.every_s is not None or self.cron is not None


@dataclass(frozen=True)
class ErrorInfo:
    """Why an attempt failed, as shown in ``last_error``."""

    type: str
    message: str


#: A progress message is cut to this many characters.
MAX_PROGRESS_MESSAGE = 500


@dataclass(frozen=True)
class Progress:
    """How far the running attempt says it is (``ctx.progress``): a fraction in [0, 1] and/or a message, and when
    the executor received it. Not part of the task's history: no event, no version."""

    fraction: float | None
    message: str | None
    at: datetime

    def __post_init__(self) -> None:
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"progress fraction must be between 0 and 1, not {self.fraction}")
        if self.message is not None and len(self.message) > MAX_PROGRESS_MESSAGE:
            object.__setattr__(self, "message", self.message[:MAX_PROGRESS_MESSAGE])


@dataclass(frozen=True)
class Event:
    """One immutable entry in a task's history; ``seq`` equals the task version it produced."""

    seq: int
    type: EventType
    at: datetime
    actor: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunLog:
    """What an attempt's outcome records of its captured output: the stored size (0: it printed nothing, so
    nothing was stored) and how long it is served after the attempt ends."""

    size: int
    retention_s: float

    def to_data(self, ended_at: datetime) -> dict[str, Any]:
        """The fields it adds to the outcome event's data (and so to the run in ``/runs``)."""
        return {"log_size": self.size, "log_expires_at": ended_at + timedelta(seconds=self.retention_s)}
