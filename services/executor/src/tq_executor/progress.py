"""A running attempt's progress reports, from its handler process to the task item, throttled.

The handler may report as often as it likes (``ctx.progress``); the waiting thread writes the newest report at
most once per ``interval_s`` (the first at once), holds back the ones in between (the newest wins), and the
runner flushes the last one before it records the outcome. Each write is one conditional ``UpdateItem`` fenced by
the attempt's claim (``Attempts.report_progress``): no event, no new version.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tq import Progress
from tqcore.domain.task import Task
from tqcore.usecases.execution import Attempts

log = logging.getLogger(__name__)

#: At most one progress write per attempt this often.
PROGRESS_INTERVAL_S = 1.0


class ProgressReporter:
    """The progress of one attempt: what its handler reported, written at most once per ``interval_s``."""

    def __init__(
        self,
        attempts: Attempts,
        task: Task,
        *,
        interval_s: float = PROGRESS_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._attempts = attempts
        self._task = task
        self._interval_s = interval_s
        self._monotonic = monotonic
        self._pending: Progress | None = None
        self._written_at: float | None = None
        #: Reports written (tests and logs).
        self.writes = 0

    def report(self, progress: Progress) -> None:
        """The handler reported ``progress``: write it now if the throttle allows, else hold it (newest wins)."""
        self._pending = progress
        self.tick()

    def tick(self) -> None:
        """Write the held report once the throttle allows."""
        if self._pending is not None and (
            self._written_at is None or self._monotonic() - self._written_at >= self._interval_s
        ):
            self.flush()

    def flush(self) -> None:
        """Write the held report now (before the outcome is recorded)."""
        report, self._pending = self._pending, None
        if report is None:
            return
        self._written_at = self._monotonic()
        try:
            self._attempts.report_progress(self._task, report.fraction, report.message)
        except Exception:  # best effort: a report that cannot be written must never cost the attempt its outcome
            log.warning("progress not recorded", extra={"task_id": self._task.id}, exc_info=True)
            return
        self.writes += 1
