"""Runs one dispatched attempt: claim, run the handler in a child process under a heartbeat, record it."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from tq_executor.handlers import Job
from tq_executor.heartbeat import Heartbeat
from tq_executor.isolation import HandlerCrashed, HandlerProcess, Outcome, Stopped
from tqcore.dispatch import Dispatch
from tqcore.domain.model import ErrorInfo, RunStatus
from tqcore.domain.task import Task
from tqcore.execution import Attempts

log = logging.getLogger(__name__)


class Runner:
    """The one function every actor calls; each worker thread has its own handler process."""

    def __init__(self, attempts: Attempts, heartbeat: Heartbeat, modules: list[str]) -> None:
        self.attempts = attempts
        self.heartbeat = heartbeat
        self._modules = modules
        self._local = threading.local()
        self._processes: list[HandlerProcess] = []
        self._lock = threading.Lock()

    def run(self, raw_dispatch: dict[str, Any], message: Any = None) -> None:
        """Run the attempt the message names, if it is still ours to run."""
        dispatch = Dispatch.from_dict(raw_dispatch)
        task = self.attempts.claim(dispatch)
        if task is None:
            return
        extra = {"task_id": task.id, "attempt": task.attempts}
        log.info("attempt started", extra=extra)
        active = self.heartbeat.track(task, message)
        try:
            outcome = self._process().run(self._job(task), active.stop)
        except Stopped:
            self.heartbeat.untrack(active)
            log.info("attempt stopped (lease lost or released)", extra=extra)
            return
        except HandlerCrashed as crash:
            outcome = Outcome(error_type="HandlerCrashed", error_message=str(crash))
        try:
            # Recorded even if it was told to stop meanwhile: a finished outcome beats a release (which then
            # finds the attempt gone), and a zombie's write is refused by the fence anyway.
            self._record(task, outcome)
        finally:
            self.heartbeat.untrack(active)
        log.info("attempt %s", "succeeded" if outcome.ok else f"failed: {outcome.error_type}", extra=extra)

    def _record(self, task: Task, outcome: Outcome) -> None:
        if outcome.ok:
            assert outcome.result_json is not None
            self.attempts.succeed(task, json.loads(outcome.result_json))
            return
        error = ErrorInfo(outcome.error_type or "Error", outcome.error_message or "")
        self.attempts.fail(task, error, RunStatus.TIMED_OUT if outcome.timed_out else RunStatus.FAILED)

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
        )

    def _process(self) -> HandlerProcess:
        process: HandlerProcess | None = getattr(self._local, "process", None)
        if process is None:
            process = self._local.process = HandlerProcess(self._modules)
            with self._lock:
                self._processes.append(process)
        return process

    def close(self) -> None:
        """Stop every handler process (after the workers stopped)."""
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            process.close()
