"""An attempt's bookkeeping: its run id, its fencing, its duration, what its outcome event records and what
follows a failure. Pure functions of values; the task aggregate applies them."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tqcore.domain.errors import StaleAttempt
from tqcore.domain.model import ErrorInfo, RunLog, RunStatus, Status


def run_id(run_no: int, attempt: int) -> str:
    """The id of one attempt of a run, as listed by ``/runs``: ``<run>.<attempt>``."""
    return f"{run_no}.{attempt}"


def duration_ms(started_at: datetime | None, now: datetime) -> int | None:
    """How long the attempt started at ``started_at`` ran, in whole milliseconds."""
    if started_at is None:
        return None
    return int((now - started_at).total_seconds() * 1000)


def enqueue_token(queued_at: datetime | None, poison_strikes: int) -> str | None:
    """Which enqueue of a task a message is for: the time it was queued (ms) and its poison strikes (see
    ``tqcore.dispatch.Dispatch.deduplication_id``); ``None`` for a task never queued."""
    if queued_at is None:
        return None
    return f"q{int(queued_at.timestamp() * 1000)}.p{poison_strikes}"


_ENQUEUE = re.compile(r"q(-?\d+)\.p\d+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _same_enqueue(enqueue: str | None, queued_at: datetime | None) -> bool:
    """Whether a message's enqueue (:func:`enqueue_token`) is the task's current one. A message without one (an
    older producer) or in another form is taken to be. The producer computed its time from its own copy of
    ``queued_at`` (microseconds, through a float) and the claim from the stored one (milliseconds): one
    millisecond apart is still the same enqueue."""
    found = _ENQUEUE.fullmatch(enqueue or "")
    if found is None or queued_at is None:
        return True
    return abs(int(found[1]) - (queued_at - _EPOCH) // timedelta(milliseconds=1)) <= 1


def check_next(
    attempt: int,
    run: int | None,
    *,
    attempts: int,
    run_no: int,
    enqueue: str | None = None,
    queued_at: datetime | None = None,
) -> None:
    """``StaleAttempt`` unless ``attempt`` (of ``run``, when known) is the next one to start, and the message
    (``enqueue``, when known) is for the task's current enqueue (``queued_at``): a message sent for an enqueue
    that was withdrawn (a pause drops a run not started yet) must not start a later enqueue of the same run and
    attempt, say the first slot after a resume, before its time."""
    if run is not None and run != run_no:
        raise StaleAttempt(f"the message is for run {run}, not the next one ({run_no})")
    if attempt != attempts + 1:
        raise StaleAttempt(f"attempt {attempt} is not the next one ({attempts + 1})")
    if not _same_enqueue(enqueue, queued_at):
        raise StaleAttempt(f"the message is for an enqueue withdrawn since ({enqueue})")


def check_owner(
    attempt: int,
    worker: str,
    claim_seq: int | None,
    *,
    status: Status,
    attempts: int,
    holder: str | None,
    held_claim: int | None,
) -> None:
    """Fence by attempt and worker, and by the claim's token when the caller holds one: ``StaleAttempt`` unless
    the caller's attempt is the one running."""
    stale_claim = claim_seq is not None and claim_seq != held_claim
    if status is not Status.RUNNING or attempts != attempt or holder != worker or stale_claim:
        raise StaleAttempt(
            f"attempt {attempt} on {worker} no longer owns the task "
            f"(status {status.value}, attempt {attempts}, worker {holder})"
        )


def outcome_data(
    attempt: int, run_no: int, started_at: datetime | None, now: datetime, log: RunLog | None
) -> dict[str, Any]:
    """What an attempt's outcome event records: the attempt, its run id, its duration and its log."""
    data = {"attempt": attempt, "run_id": run_id(run_no, attempt), "duration_ms": duration_ms(started_at, now)}
    data.update(log.to_data(now) if log is not None else {})
    return data


def failed_data(
    attempt: int,
    run_no: int,
    started_at: datetime | None,
    now: datetime,
    error: ErrorInfo,
    run_status: RunStatus,
    log: RunLog | None,
    *,
    retryable: bool,
) -> dict[str, Any]:
    """The ``failed`` event's data: the attempt, how its run ended and why, whether another attempt follows
    (``retryable``), its duration and its log."""
    return {
        "attempt": attempt,
        "run_id": run_id(run_no, attempt),
        "run_status": run_status.value,
        "error": {"type": error.type, "message": error.message},
        "retryable": retryable,
        "duration_ms": duration_ms(started_at, now),
        **(log.to_data(now) if log is not None else {}),
    }


def retry_data(attempt: int, delay_s: float, next_run_at: datetime | None) -> dict[str, Any]:
    """The ``retry_scheduled`` event's data: the next attempt, after how long, and when."""
    return {"next_attempt": attempt + 1, "delay_s": round(delay_s, 3), "next_run_at": next_run_at}


@dataclass(frozen=True)
class Poisoned:
    """What a dead-lettered message does to its queued task."""

    #: The event's data: ``queued`` again, or the run's ``dead_lettered``.
    data: dict[str, Any]
    #: Why the run failed, when it does (``None``: the task is sent again with a fresh message).
    error: ErrorInfo | None


def poisoned(attempt: int | None, receives: int, attempts: int, strikes: int, strikes_allowed: int) -> Poisoned:
    """An undecodable message (``attempt`` ``None``) fails the run at once; a decodable one may only have bounced
    (a backlog, a store outage), so it is sent again while its ``strikes`` stay under ``strikes_allowed``."""
    data = {"attempt": attempts + 1, "receives": receives, "strike": strikes}
    if attempt is not None and strikes < strikes_allowed:
        return Poisoned({**data, "reason": "message dead-lettered; sent again"}, None)
    why = "undecodable" if attempt is None else f"dead-lettered {strikes} times"
    error = ErrorInfo("PoisonMessage", f"its message was {why} (last after {receives} receives)")
    return Poisoned({**data, "attempts": attempts}, error)


class AfterFailure(enum.Enum):
    """What follows an attempt that did not succeed."""

    #: A cancel was requested: the task ends ``cancelled``.
    CANCEL = "cancel"
    #: Given back by a stopping executor, budget left: queued again at once.
    REQUEUE = "requeue"
    #: Budget left: retried after a backoff.
    RETRY = "retry"
    #: The retry budget is spent, or the failure is permanent: the run is dead-lettered.
    GIVE_UP = "give_up"
    #: Budget left, but the (repeating) task was paused: the run ends with no further attempt.
    STOP = "stop"

    @property
    def retries(self) -> bool:
        """Whether another attempt of the run follows (the ``failed`` event's ``retryable``)."""
        return self in (AfterFailure.REQUEUE, AfterFailure.RETRY)


def after_failure(
    attempt: int,
    max_retries: int,
    *,
    cancel_requested: bool,
    backoff: bool,
    permanent: bool = False,
    paused: bool = False,
) -> AfterFailure:
    """What follows the failure of ``attempt``: a run has at most ``1 + max_retries`` attempts, only one when
    the failure is ``permanent`` (the handler said retrying cannot help), and no more once its task is
    ``paused``."""
    if cancel_requested:
        return AfterFailure.CANCEL
    if permanent or attempt > max_retries:
        return AfterFailure.GIVE_UP
    if paused:
        return AfterFailure.STOP
    return AfterFailure.RETRY if backoff else AfterFailure.REQUEUE
