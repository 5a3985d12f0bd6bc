"""Runs one dispatched attempt: claim, call the handler, record the outcome."""

from __future__ import annotations

import json
import logging
from typing import Any

from tq_executor.handlers import HandlerRegistry, TaskContext
from tqcore.dispatch import Dispatch
from tqcore.domain.model import ErrorInfo, RunStatus
from tqcore.execution import Attempts

log = logging.getLogger(__name__)

#: Error messages are cut to this many characters in ``last_error``.
MAX_ERROR_CHARS = 2000


class Runner:
    """The one function every actor calls."""

    def __init__(self, attempts: Attempts, handlers: HandlerRegistry) -> None:
        self.attempts = attempts
        self.handlers = handlers

    def run(self, raw_dispatch: dict[str, Any]) -> None:
        """Run the attempt the message names, if it is still ours to run."""
        dispatch = Dispatch.from_dict(raw_dispatch)
        task = self.attempts.claim(dispatch)
        if task is None:
            return
        extra = {"task_id": task.id, "attempt": task.attempts}
        log.info("attempt started", extra=extra)
        ctx = TaskContext(
            task_id=task.id,
            type=task.type,
            group=task.group,
            attempt=task.attempts,
            payload=task.payload,
            timeout_s=task.timeout_s,
            worker=self.attempts.worker,
        )
        handler = self.handlers.get(task.type)
        try:
            if handler is None:
                raise LookupError(f"this executor has no handler for type {task.type!r}")
            result = handler(ctx)
            json.dumps(result, allow_nan=False)  # the result must be strict JSON; if not, the attempt fails
        except TimeoutError as error:
            self.attempts.fail(task, _error(error), RunStatus.TIMED_OUT)
            log.info("attempt timed out", extra=extra)
        except Exception as error:  # noqa: BLE001 - any handler failure is an attempt failure
            self.attempts.fail(task, _error(error))
            log.info("attempt failed: %s", error, extra=extra)
        else:
            self.attempts.succeed(task, result)
            log.info("attempt succeeded", extra=extra)


def _error(error: BaseException) -> ErrorInfo:
    return ErrorInfo(type(error).__name__, str(error)[:MAX_ERROR_CHARS])
