"""The task aggregate: every state change is a method that checks legality and records an event."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from tqcore.domain import attempts, pausing, recurrence
from tqcore.domain.errors import IllegalTransition
from tqcore.domain.model import ErrorInfo, Event, EventType, RunLog, RunStatus, Schedule, Status
from tqcore.domain.recurrence import BUSY as BUSY
from tqcore.domain.state import MUTABLE_FIELDS, TaskState


@dataclass
class Task(TaskState):
    """A unit of work: its state (``TaskState``) and every change to it, each recording an event."""

    # ---------------------------------------------------------------- creation
    @classmethod
    def submit(
        cls,
        *,
        task_id: str,
        type: str,
        group: str,
        owner: str,
        now: datetime,
        submitted: dict[str, Any],
        **fields: Any,
    ) -> Task:
        """A new task from an accepted submit: ``queued`` to run now, ``scheduled`` if it has a time."""
        task = cls(id=task_id, type=type, group=group, owner=owner, created_at=now, **fields)
        task._record(EventType.SUBMITTED, now, owner, submitted)
        first_run, first_slot = recurrence.first_run(task.schedule, task.created_at, now)
        if first_slot is not None:
            task.next_slot_at = first_slot
        if first_run is None or first_run <= now:  # a time already past runs at once
            if task.is_repeating and first_run is not None:
                task.next_slot_at = task._slot_after(now)
                task._start_run(now, owner, first_run)
            else:
                task._enqueue(now, owner, scheduled_for=first_run)
        else:
            task._schedule(first_run, now, owner)
        return task

    def spawn_run(self, slot: datetime, now: datetime, actor: str = "scheduler") -> Task:
        """A one-shot task running ``slot`` of this repeating task beside its current run (``overlap: allow``)."""
        child = Task(
            id=recurrence.spawned_id(self.id, slot),
            type=self.type,
            group=self.group,
            owner=self.owner,
            created_at=now,
            payload=copy.deepcopy(self.payload),
            priority=self.priority,
            pool=self.pool,
            name=self.name,
            description=self.description,
            retry=self.retry,
            timeout_s=self.timeout_s,
            expires_at=self.expires_at,
            parent_id=self.id,
        )
        child._record(EventType.SUBMITTED, now, actor, {"parent_id": self.id, "scheduled_for": slot})
        child.run_slot = slot
        child._enqueue(now, actor, scheduled_for=slot)
        return child

    # ------------------------------------------------------------- transitions
    def promote(self, now: datetime, actor: str = "scheduler") -> None:
        """A ``scheduled`` or ``retrying`` task whose time has come goes onto its queue."""
        self._require(Status.SCHEDULED, Status.RETRYING)
        if self.next_run_at is not None and self.next_run_at > now:
            raise IllegalTransition("task is not due yet", next_run_at=self.next_run_at)
        self._enqueue(now, actor)

    def on_due(self, now: datetime, *, starting_deadline_s: float, actor: str = "scheduler") -> Task | None:
        """The scheduler found the task due (``wake_at`` has passed): act on it as ``recurrence.Due`` says (a
        repeating task that missed slots runs once to catch up, if its latest slot is no older than
        ``starting_deadline_s``). Returns the spawned task (``overlap: allow``) for the caller to create."""
        due = recurrence.due(self.status, self.next_run_at, self.is_expired(now), self.is_repeating, now)
        if due is recurrence.Due.EXPIRE:
            self.expire(now, actor)
        elif due is recurrence.Due.REPEAT:
            slot = self._catch_up(now, starting_deadline_s, actor)
            if slot is not None:
                self._start_run(now, actor, slot)
            else:
                self._schedule_next(now, actor)
        elif due is recurrence.Due.PROMOTE:
            self.promote(now, actor)
        elif self._slot_pending_while_busy and self.next_slot_at is not None and self.next_slot_at <= now:
            return self._slot_while_busy(now, starting_deadline_s, actor)
        else:
            raise IllegalTransition("task is not due yet", wake_at=self.wake_at)
        return None

    def _catch_up(self, now: datetime, starting_deadline_s: float, actor: str) -> datetime | None:
        """Move past every slot up to ``now`` (those passed over: one ``run_skipped`` event); the latest one, if
        it may still start, else ``None``."""
        assert self.schedule is not None
        assert self.next_slot_at is not None
        caught = recurrence.catch_up(self.schedule, self.created_at, self.next_slot_at, now, starting_deadline_s)
        self.next_slot_at = caught.next_slot_at
        if caught.skipped is not None:
            self._record(EventType.RUN_SKIPPED, now, actor, caught.skipped)
        return caught.slot

    def slot_spawned(
        self, slot: datetime, child_id: str, now: datetime, *, starting_deadline_s: float, actor: str = "scheduler"
    ) -> None:
        """``slot`` runs as the spawned task ``child_id`` (``overlap: allow``): move past it, busy or not.

        The commit that follows a spawn: if, meanwhile, the run under way ended and the task now waits for
        that very slot, it must still not run it itself, or the slot would run twice.
        """
        if self.status.is_terminal or self.next_slot_at is None or self.next_slot_at > now:
            raise IllegalTransition("the task is already past that slot")
        if self._catch_up(now, starting_deadline_s, actor) != slot:
            raise IllegalTransition("the slot due is no longer the one spawned")
        self._record(EventType.RUN_SPAWNED, now, actor, {"task_id": child_id, "scheduled_for": slot})
        if self.status is Status.SCHEDULED:
            self._schedule_next(now, actor)

    def _slot_while_busy(self, now: datetime, starting_deadline_s: float, actor: str) -> Task | None:
        if self.is_expired(now):  # no run starts after expires_at: the schedule ends with the current run
            self._record(EventType.RUN_SKIPPED, now, actor, {"reason": "expired", "first": self.next_slot_at})
            self.next_slot_at = None
            return None
        slot = self._catch_up(now, starting_deadline_s, actor)
        if slot is None:
            return None
        action, why = recurrence.while_busy(self.overlap, self.waiting_slot)
        if action is recurrence.WhileBusy.SPAWN:
            child = self.spawn_run(slot, now, actor)
            self._record(EventType.RUN_SPAWNED, now, actor, {"task_id": child.id, "scheduled_for": slot})
            return child
        if action is recurrence.WhileBusy.WAIT:
            self.waiting_slot = slot
            self._record(EventType.RUN_WAITING, now, actor, {"scheduled_for": slot})
            return None
        self._record(
            EventType.RUN_SKIPPED,
            now,
            actor,
            {"reason": "overlap", "scheduled_for": slot, "detail": why, "run_id": self.run_id(max(self.attempts, 1))},
        )
        return None

    def resend(self, now: datetime, actor: str = "reaper") -> None:
        """A ``queued`` task nobody claimed in time is sent again (a new version, so a new message)."""
        self._require(Status.QUEUED)
        self.resends += 1
        self._record(EventType.QUEUED, now, actor, {"attempt": self.attempts + 1, "resend": self.resends})

    def claim(
        self,
        attempt: int,
        worker: str,
        now: datetime,
        lease_s: float,
        *,
        run: int | None = None,
        enqueue: str | None = None,
    ) -> None:
        """An executor takes the lease for ``attempt`` (of run ``run`` and enqueue ``enqueue``, when the message
        says); only the attempt the queue was given can start: attempt numbers restart with every run, run
        numbers never repeat, and a withdrawn enqueue's message never starts a later one."""
        self._require(Status.QUEUED)
        attempts.check_next(
            attempt, run, attempts=self.attempts, run_no=self.run_no, enqueue=enqueue, queued_at=self.queued_at
        )
        self.status = Status.RUNNING
        self.attempts = attempt
        self.worker = worker
        self.started_at = now
        self.lease_expires_at = now + timedelta(seconds=lease_s)
        self.progress = None  # a new attempt starts without the last one's report
        self._record(
            EventType.CLAIMED,
            now,
            f"executor:{worker}",
            {"attempt": attempt, "run_id": self.run_id(attempt), "worker": worker},
        )
        self.claim_seq = self.version

    def succeed(
        self,
        attempt: int,
        worker: str,
        result: Any,
        now: datetime,
        *,
        claim_seq: int | None = None,
        log: RunLog | None = None,
    ) -> None:
        """The running attempt returned ``result``."""
        self._require_owner(attempt, worker, claim_seq)
        data = attempts.outcome_data(attempt, self.run_no, self.started_at, now, log)
        self.result = result
        self.last_error = None
        self.finished_at = now
        self._release()
        if not self.is_repeating:
            self.status = Status.SUCCEEDED
        self._record(EventType.SUCCEEDED, now, f"executor:{worker}", data)
        if self.is_repeating:
            self._run_ended(now, f"executor:{worker}")

    def fail(
        self,
        attempt: int,
        worker: str,
        error: ErrorInfo,
        now: datetime,
        *,
        jitter: float,
        run_status: RunStatus = RunStatus.FAILED,
        claim_seq: int | None = None,
        log: RunLog | None = None,
        permanent: bool = False,
    ) -> None:
        """The running attempt failed: retry after a backoff while the budget lasts, else dead-letter; a
        ``permanent`` failure (the handler raised ``Permanent``) is dead-lettered at once, budget or not."""
        self._require_owner(attempt, worker, claim_seq)
        self._end_attempt(error, now, f"executor:{worker}", run_status, jitter, log=log, permanent=permanent)

    def expire_lease(self, now: datetime, *, jitter: float, actor: str = "reaper") -> None:
        """The lease ran out (the executor died or stalled): the attempt is ``lost``."""
        self._require(Status.RUNNING)
        if self.lease_expires_at is not None and self.lease_expires_at > now:
            raise IllegalTransition("the lease has not expired", lease_expires_at=self.lease_expires_at)
        self._record(EventType.LEASE_EXPIRED, now, actor, {"attempt": self.attempts, "worker": self.worker})
        error = ErrorInfo("LeaseExpired", f"lease of {self.worker} expired")
        self._end_attempt(error, now, actor, RunStatus.LOST, jitter)

    def release(self, attempt: int, worker: str, now: datetime, *, claim_seq: int | None = None) -> None:
        """The executor is shutting down before the attempt finished: give the task back at once.

        The attempt counts as ``lost`` (it may have run partly, so the next one gets a new number) and the
        task is queued again immediately, without a backoff, for another executor to pick up.
        """
        self._require_owner(attempt, worker, claim_seq)
        actor = f"executor:{worker}"
        error = ErrorInfo("Released", f"executor {worker} shut down before the attempt finished")
        self._end_attempt(error, now, actor, RunStatus.LOST, jitter=0.0, backoff=False)

    def poisoned(
        self,
        attempt: int | None,
        receives: int,
        now: datetime,
        *,
        strikes_allowed: int,
        run: int | None = None,
        enqueue: str | None = None,
        actor: str = "reaper",
    ) -> None:
        """SQS dead-lettered the queued task's message after ``receives`` deliveries.

        ``attempt`` is the attempt the message carried (``None`` if it could not even be decoded), with its run
        and enqueue as :meth:`claim` checks them: a withdrawn enqueue's message is not the task's live one. An
        undecodable message fails the task at once. A decodable one may only have bounced (a backlog, a store
        outage): the task is sent again with a fresh message, up to ``strikes_allowed`` times, then failed.
        """
        self._require(Status.QUEUED)
        if attempt is not None:
            attempts.check_next(
                attempt, run, attempts=self.attempts, run_no=self.run_no, enqueue=enqueue, queued_at=self.queued_at
            )
        self.poison_strikes += 1
        verdict = attempts.poisoned(attempt, receives, self.attempts, self.poison_strikes, strikes_allowed)
        if verdict.error is None:
            self._record(EventType.QUEUED, now, actor, verdict.data)
            return
        self.last_error = verdict.error
        self._dead_letter(now, actor, verdict.data)

    def request_cancel(self, actor: str, now: datetime) -> None:
        """Cancel: at once when nothing runs, else the running attempt is told to stop."""
        if self.status in (Status.SUCCEEDED, Status.FAILED):
            raise IllegalTransition(f"a {self.status.value} task cannot be cancelled")
        if self.status is Status.CANCELLED:
            return  # cancelling twice changes nothing (DELETE is idempotent)
        if self.status is Status.EXPIRED:
            raise IllegalTransition("an expired task cannot be cancelled")
        if self.status is Status.RUNNING:
            if not self.cancel_requested:
                self.cancel_requested = True
                self._record(EventType.CANCEL_REQUESTED, now, actor, {"attempt": self.attempts})
            return
        self._finish_cancelled(now, actor, {})

    def pause(self, actor: str, now: datetime) -> None:
        """A repeating task starts no attempt until it is resumed. With no attempt running it is ``paused`` at
        once: an attempt waiting to start (a queued run, one staged ahead of its time, a retry) never starts
        (``pausing.withdraw``). An attempt running finishes (the task is ``paused`` once it ends, with no retry).
        Pausing a paused task changes nothing."""
        pausing.check(repeating=self.is_repeating, status=self.status, cancel_requested=self.cancel_requested)
        if self.paused_at is not None:
            return
        self.paused_at = now
        next_attempt = self.attempts + 1
        withdrawal = pausing.withdraw(
            self.status, self.attempts, self.run_slot, self.next_slot_at, self.run_id(next_attempt), now
        )
        if withdrawal is not None and withdrawal.slot is not None:
            self.next_slot_at = withdrawal.slot
        elif withdrawal is not None:
            self._end_run()
        self._record(EventType.PAUSED, now, actor, pausing.paused_data(self.next_slot_at, withdrawal))
        if self.waiting_slot is not None:  # ``overlap: queue``: the run waiting for the current one never starts
            skipped = {"reason": "paused", "scheduled_for": self.waiting_slot}
            self.waiting_slot = None
            self._record(EventType.RUN_SKIPPED, now, actor, skipped)
        if self.status in (Status.SCHEDULED, Status.QUEUED, Status.RETRYING):
            self._park()

    def resume(self, actor: str, now: datetime) -> None:
        """A paused task goes on with its first slot after ``now``; the slots that passed while it was paused
        are recorded as skipped (one ``run_skipped`` event, reason ``paused``)."""
        if self.paused_at is None:
            raise IllegalTransition(f"task is {self.status.value}, not paused", status=self.status.value)
        assert self.schedule is not None
        self._record(EventType.RESUMED, now, actor, {"paused_at": self.paused_at})
        self.paused_at = None
        self.next_slot_at, skipped = recurrence.after_pause(self.schedule, self.created_at, self.next_slot_at, now)
        if skipped is not None:
            self._record(EventType.RUN_SKIPPED, now, actor, skipped)
        if self.status is Status.PAUSED:
            self._schedule_next(now, actor)

    def acknowledge_cancel(
        self, attempt: int, worker: str, now: datetime, *, claim_seq: int | None = None, log: RunLog | None = None
    ) -> None:
        """The running attempt stopped because a cancel was requested (its heartbeat told it)."""
        self._require_owner(attempt, worker, claim_seq)
        if not self.cancel_requested:
            raise IllegalTransition("no cancel was requested")
        self._finish_cancelled(
            now, f"executor:{worker}", attempts.outcome_data(attempt, self.run_no, self.started_at, now, log)
        )

    def expire(self, now: datetime, actor: str = "scheduler") -> None:
        """A task not started before ``expires_at`` ends ``expired``."""
        self._require(Status.SCHEDULED, Status.QUEUED, Status.RETRYING)
        if self.expires_at is None or self.expires_at > now:
            raise IllegalTransition("the task has not expired")
        self.status = Status.EXPIRED
        self.finished_at = now
        self.next_run_at = self.next_slot_at = self.waiting_slot = None
        self._record(EventType.EXPIRED, now, actor, {"expires_at": self.expires_at})

    def update(self, changes: dict[str, Any], actor: str, now: datetime) -> None:
        """Change user-settable fields; not on a terminal task."""
        unknown = set(changes) - MUTABLE_FIELDS
        if unknown:
            raise IllegalTransition(f"fields cannot be changed: {', '.join(sorted(unknown))}")
        if self.status.is_terminal:
            raise IllegalTransition(f"a {self.status.value} task cannot be changed")
        changed = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if not changed:
            return
        if "schedule" in changed:
            self._reschedule(changed["schedule"], now)
        for name, value in changed.items():
            setattr(self, name, value)
        data: dict[str, Any] = {"fields": sorted(changed)}
        if "schedule" in changed:
            data.update(next_run_at=self.next_run_at, next_slot_at=self.next_slot_at)
        self._record(EventType.UPDATED, now, actor, data)

    def redrive(self, actor: str, now: datetime) -> None:
        """A ``failed`` task goes back on its queue with a fresh retry budget."""
        self._require(Status.FAILED)
        self.attempts = 0
        self.run_count += 1  # the redriven work is a new run: its attempts get new run ids
        self.poison_strikes = 0
        self.finished_at = None
        self._record(EventType.REDRIVEN, now, actor, {})
        self._enqueue(now, actor)

    # --------------------------------------------------------------- internals
    def _reschedule(self, schedule: Schedule | None, now: datetime) -> None:
        """A new schedule's next slot (and next run); a paused task keeps waiting for ``resume``."""
        if self.paused_at is not None and not (schedule is not None and schedule.is_repeating):
            raise IllegalTransition("a paused task's schedule must repeat: resume it first")
        status = Status.SCHEDULED if self.status is Status.PAUSED else self.status
        new = recurrence.reschedule(schedule, self.created_at, now, status, self.is_repeating, self.run_slot)
        self.next_slot_at = new.next_slot_at
        if not new.keep_next_run and self.status is not Status.PAUSED:
            self.next_run_at = new.next_run_at

    def _end_attempt(
        self,
        error: ErrorInfo,
        now: datetime,
        actor: str,
        run_status: RunStatus,
        jitter: float,
        *,
        backoff: bool = True,
        log: RunLog | None = None,
        permanent: bool = False,
    ) -> None:
        attempt = self.attempts
        self.last_error = error
        after = attempts.after_failure(
            attempt,
            self.retry.max_retries,
            cancel_requested=self.cancel_requested,
            backoff=backoff,
            permanent=permanent,
            paused=self.paused_at is not None,
        )
        data = attempts.failed_data(
            attempt, self.run_no, self.started_at, now, error, run_status, log, retryable=after.retries
        )
        if after is attempts.AfterFailure.STOP:
            data["paused"] = True  # budget left, but no attempt starts while paused
        self._record(EventType.FAILED, now, actor, data)
        self._release()
        if after is attempts.AfterFailure.CANCEL:
            self._finish_cancelled(now, actor, {})
        elif after is attempts.AfterFailure.STOP:  # the run ends here; the task waits to be resumed
            self._end_run()
            self.finished_at = None
            self._park()
        elif after is attempts.AfterFailure.REQUEUE:
            self._enqueue(now, actor)
        elif after is attempts.AfterFailure.RETRY:
            delay_s = self.retry.delay_s(attempt, jitter)
            self.status = Status.RETRYING
            self.next_run_at = now + timedelta(seconds=delay_s)
            self._record(EventType.RETRY_SCHEDULED, now, actor, attempts.retry_data(attempt, delay_s, self.next_run_at))
        else:
            data = {"attempts": attempt, "run_id": self.run_id(attempt), **({"permanent": True} if permanent else {})}
            self._dead_letter(now, actor, data)

    def _dead_letter(self, now: datetime, actor: str, data: dict[str, Any]) -> None:
        """The run failed for good: the task fails, unless it repeats and has runs left (its schedule goes on)."""
        if self.is_repeating and (self.next_slot_at is not None or self.waiting_slot is not None):
            self._record(EventType.DEAD_LETTERED, now, actor, {**data, "schedule_continues": True})
            self._run_ended(now, actor)
            return
        self.status = Status.FAILED
        self.finished_at = now
        self._record(EventType.DEAD_LETTERED, now, actor, data)

    def _run_ended(self, now: datetime, actor: str) -> None:
        """A repeating task's run is over: stop if cancelled, else start the waiting run, wait for the next
        slot, or end (``succeeded``: its last run is done and no slot is left)."""
        self._end_run()
        if self.cancel_requested:
            self._finish_cancelled(now, actor, {})
        elif self.waiting_slot is not None:
            slot, self.waiting_slot = self.waiting_slot, None
            self.finished_at = None
            self._start_run(now, actor, slot)
        elif self.next_slot_at is None:
            self.status = Status.SUCCEEDED
            self.finished_at = now
        elif self.paused_at is not None:  # paused during the run: no slot until it is resumed
            self.finished_at = None
            self._park()
        else:
            self.finished_at = None
            self._schedule(self.next_slot_at, now, actor)

    def _end_run(self) -> None:
        """Count the run just over; the next one starts with attempt 1."""
        self.run_count += 1
        self.attempts = 0
        self.poison_strikes = 0

    def _start_run(self, now: datetime, actor: str, slot: datetime) -> None:
        """Queue a repeating task's run for ``slot``."""
        self.run_slot = slot
        self._enqueue(now, actor, scheduled_for=slot)

    def _schedule_next(self, now: datetime, actor: str) -> None:
        """An idle repeating task waits for its next slot, or, with none left, ends ``expired``."""
        if self.next_slot_at is not None:
            self._schedule(self.next_slot_at, now, actor)
            return
        self.status = Status.EXPIRED
        self.finished_at = now
        self.next_run_at = None
        self._record(EventType.EXPIRED, now, actor, {"reason": "no slot left before the schedule's end_at"})

    def _park(self) -> None:
        """Paused and idle: out of the scheduler's sight (no ``wake_at``) until resumed."""
        self.status = Status.PAUSED
        self.next_run_at = None

    def _finish_cancelled(self, now: datetime, actor: str, data: dict[str, Any]) -> None:
        self._release()
        self.status = Status.CANCELLED
        self.finished_at = now
        self.next_run_at = self.next_slot_at = self.waiting_slot = self.paused_at = None
        self._record(EventType.CANCELLED, now, actor, data)

    def _enqueue(self, now: datetime, actor: str, *, scheduled_for: datetime | None = None) -> None:
        data: dict[str, Any] = {"attempt": self.attempts + 1, "priority": self.priority.value}
        # The slot (or retry time) this enqueue is for; sent again after a release, it is still the run's slot.
        scheduled_for = scheduled_for or self.next_run_at or (self.run_slot if self.is_repeating else None)
        if scheduled_for is not None:
            data["scheduled_for"] = scheduled_for
        self.status = Status.QUEUED
        self.queued_at = now
        self.resends = 0
        self.next_run_at = None
        self._record(EventType.QUEUED, now, actor, data)

    def _schedule(self, at: datetime, now: datetime, actor: str) -> None:
        self.status = Status.SCHEDULED
        self.next_run_at = at
        self._record(EventType.SCHEDULED, now, actor, {"next_run_at": at})

    def _release(self) -> None:
        if self.claim_seq is not None:
            self.released_claim = self.claim_seq
        self.worker = None
        self.lease_expires_at = None
        self.claim_seq = None

    def _record(self, type: EventType, now: datetime, actor: str, data: dict[str, Any]) -> None:
        self.version += 1
        self.updated_at = now
        self.pending_events.append(Event(seq=self.version, type=type, at=now, actor=actor, data=data))

    def committed(self) -> Task:
        """This task with its pending events marked as committed (cleared)."""
        return replace(self, pending_events=[], released_claim=None)
