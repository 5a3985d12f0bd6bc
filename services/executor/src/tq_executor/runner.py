"""Runs one dispatched attempt: claim, run the handler in a child process under a heartbeat, record it."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from prometheus_client import Gauge

from tq_executor.handlers import Job
from tq_executor.heartbeat import Heartbeat
from tq_executor.isolation import HandlerCrashed, HandlerProcess, Outcome, Stopped
from tq_executor.progress import PROGRESS_INTERVAL_S, ProgressReporter, ProgressWriter
from tq_executor.run_log import RunLogs
from tq_executor.sandbox import UidPool
from tqcore import tracing
from tqcore.dispatch import Dispatch
from tqcore.domain.errors import IllegalTransition
from tqcore.domain.model import ErrorInfo, RunLog, RunStatus
from tqcore.domain.task import Task
from tqcore.logs import log_context
from tqcore.usecases.execution import Attempts

log = logging.getLogger(__name__)

IN_PROGRESS = Gauge("tq_attempts_in_progress", "Attempts this executor process is running.")


class Runner:
    """The one function every actor calls; each worker thread has its own handler process."""

    def __init__(
        self,
        attempts: Attempts,
        heartbeat: Heartbeat,
        modules: list[str],
        logs: RunLogs | None = None,
        uids: UidPool | None = None,
    ) -> None:
        self.attempts = attempts
        self.heartbeat = heartbeat
        self._modules = modules
        #: Where attempts' output is captured and stored; ``None``: not captured (tests of other things).
        self.logs = logs
        #: Where each worker slot takes the uid its scripts run as; ``None``: they run as the executor's uid.
        self._uids = uids
        #: At most one progress write per attempt this often.
        self.progress_interval_s = PROGRESS_INTERVAL_S
        #: Writes the running attempts' progress in the background (never on the thread watching the attempt).
        self.progress_writer = ProgressWriter()
        self._local = threading.local()
        self._processes: list[HandlerProcess] = []
        self._lock = threading.Lock()

    def run(self, dispatch: Dispatch | dict[str, Any], message: Any = None) -> None:
        """Run the attempt the message names (its dispatch, decoded or as sent), if it is still ours to run."""
        if not isinstance(dispatch, Dispatch):
            dispatch = Dispatch.from_dict(dispatch)
        # The handler process first, then the lease: starting it can take seconds (a fork server still importing
        # the handler modules, a child replaced after a kill). An executor that dies meanwhile has claimed
        # nothing, so its task loses no attempt and waits for no lease to expire and no backoff: its message
        # shows again within a lease for another executor. (An error here leaves the message to SQS.)
        self._process().start()
        task = self.attempts.claim(dispatch)
        if task is None:
            return
        # Every line logged while the attempt runs, here or in tqcore, names the task and attempt.
        with log_context(task_id=task.id, attempt=task.attempts), IN_PROGRESS.track_inprogress():
            self._run_claimed(task, message)

    def _run_claimed(self, task: Task, message: Any) -> None:
        log.info("attempt started")
        active = self.heartbeat.track(task, message)
        progress = ProgressReporter(
            self.attempts, task, interval_s=self.progress_interval_s, writer=self.progress_writer
        )
        try:
            outcome = self._process().run(self._job(task), active.stop, active.cancel, progress=progress)
        except Stopped:
            progress.discard()
            self.heartbeat.untrack(active)
            if self.logs is not None:
                self.logs.discard(task)  # nothing is recorded for this attempt: its next owner records its own
            log.info("attempt stopped (lease lost or released)")
            return
        except HandlerCrashed as crash:
            outcome = Outcome(error_type="HandlerCrashed", error_message=str(crash))
        except Exception as error:
            log.exception("attempt could not be run")
            self._process().kill()  # whatever state it was left in, the next attempt gets a fresh child
            outcome = Outcome(error_type=type(error).__name__, error_message=f"the executor could not run it: {error}")
        progress.flush()  # the last report lands before the outcome (which ends the claim that fences it)
        try:
            # Recorded even if it was told to stop meanwhile: a finished outcome beats a release (which then
            # finds the attempt gone), and a zombie's write is refused by the fence anyway.
            run_log = self.logs.collect(task) if self.logs is not None else None
            self._record(task, outcome, run_log)
        finally:
            self.heartbeat.untrack(active)
        log.info("attempt %s", _describe(outcome))
        tracing.note_outcome(_describe(outcome), failed=not (outcome.ok or outcome.cancelled))

    def _record(self, task: Task, outcome: Outcome, run_log: RunLog | None) -> None:
        if outcome.cancelled:
            # Told to stop because its task was cancelled (the heartbeat saw the lease's flag): whatever the
            # handler returned after that, the attempt is recorded as the cancel's acknowledgement.
            try:
                self.attempts.cancelled(task, run_log)
                return
            except IllegalTransition as refused:  # no cancel on record after all: never leave the run open
                log.error("cancel not recorded (%s); failing the attempt", refused, extra={"task_id": task.id})
        if outcome.ok:
            assert outcome.result_json is not None
            self.attempts.succeed(task, json.loads(outcome.result_json), run_log)
            return
        error = ErrorInfo(outcome.error_type or "Error", outcome.error_message or "")
        run_status = RunStatus.TIMED_OUT if outcome.timed_out else RunStatus.FAILED
        self.attempts.fail(task, error, run_status, run_log, permanent=outcome.permanent)

    def _job(self, task: Task) -> Job:
        return Job(
            task.id,
            task.type,
            task.group,
            task.attempts,
            task.payload,
            task.timeout_s,
            self.attempts.worker,
            task.run_id(task.attempts),
            str(self.logs.path(task)) if self.logs is not None else "",
            self.logs.max_bytes if self.logs is not None else 0,
        )

    def _process(self) -> HandlerProcess:
        process: HandlerProcess | None = getattr(self._local, "process", None)
        if process is None:
            uid = self._uids.take() if self._uids is not None else None
            process = self._local.process = HandlerProcess(self._modules, uid)
            with self._lock:
                self._processes.append(process)
        return process

    def close(self) -> None:
        """Stop every handler process (after the workers stopped)."""
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            process.close()
        if self.logs is not None:
            self.logs.close()
        if self._uids is not None:
            self._uids.close()


def _describe(outcome: Outcome) -> str:
    if outcome.cancelled:
        return "cancelled"
    if outcome.permanent:
        return f"failed permanently: {outcome.error_type}"
    return "succeeded" if outcome.ok else f"failed: {outcome.error_type}"
