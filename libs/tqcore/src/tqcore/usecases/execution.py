"""The executor's use cases: claim an attempt, then record how it ended, fenced by attempt and worker."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from tqcore.dispatch import Dispatch
from tqcore.domain.errors import IllegalTransition, StaleAttempt, TaskNotFound, TaskTooLarge
from tqcore.domain.model import ErrorInfo, Progress, RunLog, RunStatus, Status
from tqcore.domain.task import Task
from tqcore.errors import StoreUnavailable
from tqcore.ports import Clock, LeaseState, TaskQueue, TaskStore
from tqcore.usecases.recovery import hand_on
from tqcore.usecases.service import mutate

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Pauses between local retries of an outcome write while the store is unavailable.
OUTCOME_RETRY_PAUSES_S = (0.5, 1.0, 2.0, 4.0)


class Attempts:
    """Claims and outcomes of attempts, for one executor process (``worker``)."""

    def __init__(
        self,
        store: TaskStore,
        queue: TaskQueue,
        clock: Clock,
        *,
        worker: str,
        lease_s: float,
        jitter: Callable[[], float] = random.random,
        lease_store: TaskStore | None = None,
    ) -> None:
        self._store = store
        #: Where heartbeats extend leases: the same table, through a client whose calls give up well inside a
        #: lease (a beat stuck for botocore's default minutes would outlive the lease it keeps).
        self._lease_store = lease_store or store
        self._queue = queue
        #: The time leases are measured in (the heartbeat's deadlines use it too).
        self.clock = clock
        self.worker = worker
        self._lease_s = lease_s
        self._jitter = jitter

    def claim(self, dispatch: Dispatch) -> Task | None:
        """Take the lease for ``dispatch.attempt``; ``None`` if that attempt is not ours to run.

        Fast path: the message carries the snapshot it was sent with, so one conditional transaction
        (``version`` unchanged) both checks and claims. If the task changed meanwhile, the store hands
        back the current snapshot and the domain decides again.
        """
        task = dispatch.task
        if task is None or task.version != dispatch.version:
            try:
                task = self._store.get(dispatch.task_id)
            except TaskNotFound:
                log.warning("dropping a message for a task that does not exist", extra={"task_id": dispatch.task_id})
                return None
        now = self.clock.now()
        if task.is_expired(now) and task.status is Status.QUEUED:
            self._expire(task, now)
            return None
        try:
            return mutate(
                self._store,
                task,
                lambda t: t.claim(
                    dispatch.attempt, self.worker, now, self._lease_s, run=dispatch.run, enqueue=dispatch.enqueue
                ),
            )
        except IllegalTransition as refused:
            log.info(
                "not claiming: %s",
                refused,
                extra={"task_id": dispatch.task_id, "attempt": dispatch.attempt},
            )
            return None

    def _expire(self, task: Task, now: datetime) -> None:
        with contextlib.suppress(IllegalTransition):  # claimed, cancelled or changed meanwhile
            mutate(self._store, task, lambda t: t.expire(now, f"executor:{self.worker}"))
        log.info("not claiming: expired", extra={"task_id": task.id})

    def succeed(self, task: Task, result: Any, log: RunLog | None = None) -> Task | None:
        """Record success; ``None`` if the attempt no longer owns the task (a zombie is never recorded).

        A result too large to store fails the attempt with ``ResultTooLarge`` instead.
        """
        token = task.claim_seq
        now = self.clock.now
        try:
            done = self._fenced(
                task, lambda t: t.succeed(task.attempts, self.worker, result, now(), claim_seq=token, log=log)
            )
        except TaskTooLarge as error:
            return self.fail(task, ErrorInfo("ResultTooLarge", error.message), log=log)
        if done is not None:
            hand_on(self._queue, done)  # a repeating task's waiting run (overlap: queue) starts at once
        return done

    def fail(
        self,
        task: Task,
        error: ErrorInfo,
        run_status: RunStatus = RunStatus.FAILED,
        log: RunLog | None = None,
        *,
        permanent: bool = False,
    ) -> Task | None:
        """Record failure (retrying or dead-lettered; at once when ``permanent``); ``None`` if the attempt no
        longer owns the task."""
        jitter = self._jitter()
        token = task.claim_seq
        # The time is read on every try: a retry's next_run_at must fall after the commit, never in a minute
        # bucket the scheduler already drained while this write waited out a throttle.
        now = self.clock.now
        done = self._fenced(
            task,
            lambda t: t.fail(
                task.attempts,
                self.worker,
                error,
                now(),
                jitter=jitter,
                run_status=run_status,
                claim_seq=token,
                log=log,
                permanent=permanent,
            ),
        )
        if done is not None:
            hand_on(self._queue, done)  # dead-lettered: leave its record in the DLQ
        return done

    def cancelled(self, task: Task, log: RunLog | None = None) -> Task | None:
        """Record that the attempt stopped because its task's cancel was requested (``acknowledge_cancel``,
        fenced like an outcome); ``None`` if the attempt no longer owns the task."""
        token = task.claim_seq
        now = self.clock.now
        # The claim-time snapshot predates the cancel; read the current one (cancels are rare) so the domain
        # sees the request, and the commit is not first refused on its version.
        try:
            current = _through_throttles(lambda: self._store.get(task.id), task.id)
        except TaskNotFound:
            return None
        done = self._fenced(
            current, lambda t: t.acknowledge_cancel(task.attempts, self.worker, now(), claim_seq=token, log=log)
        )
        if done is not None:
            hand_on(self._queue, done)
        return done

    def heartbeat(self, task: Task) -> LeaseState:
        """Extend the attempt's lease by ``lease_s`` from now: ``HELD``, ``CANCEL_REQUESTED`` (stop and record
        the cancel) or ``LOST`` (stop, record nothing)."""
        assert task.claim_seq is not None
        until = self.clock.now() + timedelta(seconds=self._lease_s)
        return self._lease_store.extend_lease(task.id, task.claim_seq, until)

    def report_progress(self, task: Task, fraction: float | None, message: str | None) -> bool:
        """Show how far the claimed attempt is (``Task.progress``, stamped now): no event, no new version; False
        if the attempt no longer runs the task or the store could not take it (progress is best effort)."""
        assert task.claim_seq is not None
        report = Progress(fraction, message, self.clock.now())
        try:
            return self._lease_store.report_progress(task.id, task.claim_seq, report)
        except StoreUnavailable as error:
            log.warning("progress not recorded: %s", error, extra={"task_id": task.id, "attempt": task.attempts})
            return False

    def release(self, task: Task) -> Task | None:
        """Give an unfinished attempt back at shutdown: the task is queued again at once (or dead-lettered)."""
        token = task.claim_seq
        now = self.clock.now
        done = self._fenced(task, lambda t: t.release(task.attempts, self.worker, now(), claim_seq=token))
        if done is not None:
            hand_on(self._queue, done)
        return done

    def _fenced(self, task: Task, change: Callable[[Task], None]) -> Task | None:
        # The outcome is the one write an attempt cannot do without: after botocore's own retries, keep
        # trying through a throttle for a while before giving the message back to SQS.
        try:
            return _through_throttles(lambda: mutate(self._store, task, change), task.id)
        except StaleAttempt as stale:
            log.warning("outcome discarded: %s", stale, extra={"task_id": task.id, "attempt": task.attempts})
            return None


def _through_throttles(call: Callable[[], T], task_id: str) -> T:
    """``call()``, tried again after each of ``OUTCOME_RETRY_PAUSES_S`` while the store is unavailable."""
    for pause_s in (*OUTCOME_RETRY_PAUSES_S, None):
        try:
            return call()
        except StoreUnavailable:
            if pause_s is None:
                raise
            log.warning("store unavailable; retrying the outcome in %.1f s", pause_s, extra={"task_id": task_id})
            time.sleep(pause_s)
    raise AssertionError("unreachable")
