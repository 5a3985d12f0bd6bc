"""A running attempt's progress reports, from its handler process to the task item, throttled, in the background.

The handler may report as often as it likes (``ctx.progress``); the waiting thread only records the newest report
(it must never wait on DynamoDB: it watches the stop, the timeout and the cancel). The executor's one
``ProgressWriter`` thread writes each attempt's newest report at most once per ``interval_s`` (the first as soon as
it sees it) and holds back the ones in between (the newest wins); the runner flushes the last one before it
records the outcome, after which nothing more is written for the attempt (a background write under way is waited
for, so an older report never lands after the last). Each write is one conditional ``UpdateItem`` fenced by the
attempt's claim (``Attempts.report_progress``): no event, no new version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from tq import Progress
from tqcore.domain.task import Task
from tqcore.usecases.execution import Attempts

log = logging.getLogger(__name__)

#: At most one progress write per attempt this often.
PROGRESS_INTERVAL_S = 1.0
#: How often the writer thread looks for reports that are due.
WRITER_POLL_S = 0.1


class ProgressReporter:
    """The progress of one attempt: what its handler reported, written at most once per ``interval_s``.

    With a ``writer``, a report wakes its thread, which calls :meth:`tick`; without one, the caller ticks.
    """

    def __init__(
        self,
        attempts: Attempts,
        task: Task,
        *,
        interval_s: float = PROGRESS_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
        writer: ProgressWriter | None = None,
    ) -> None:
        self._attempts = attempts
        self._task = task
        self._interval_s = interval_s
        self._monotonic = monotonic
        self._writer = writer
        self._pending: Progress | None = None
        self._written_at: float | None = None
        self._closed = False
        self._lock = threading.Lock()  # the held report and the closed flag
        self._writing = threading.Lock()  # held through a write: the last flush waits for one under way
        #: Reports written (tests and logs).
        self.writes = 0

    def report(self, progress: Progress) -> None:
        """The handler reported ``progress``: hold it (newest wins) for the writer; never waits on a write."""
        with self._lock:
            if self._closed:
                return
            self._pending = progress
        if self._writer is not None:
            self._writer.add(self)

    def tick(self) -> None:
        """Write the held report once the throttle allows (the writer thread's call)."""
        with self._writing:
            with self._lock:
                due = self._written_at is None or self._monotonic() - self._written_at >= self._interval_s
                if self._closed or self._pending is None or not due:
                    return
                report, self._pending = self._pending, None
            self._write(report)

    def flush(self) -> None:
        """Write the held report now (before the outcome is recorded); nothing is written after it."""
        with self._writing:
            with self._lock:
                report, self._pending, self._closed = self._pending, None, True
            if report is not None:
                self._write(report)
        if self._writer is not None:
            self._writer.remove(self)

    def discard(self) -> None:
        """Write nothing more for this attempt (it was stopped: its next owner reports its own progress)."""
        with self._lock:
            self._pending, self._closed = None, True
        if self._writer is not None:
            self._writer.remove(self)

    def _write(self, report: Progress) -> None:
        self._written_at = self._monotonic()
        try:
            self._attempts.report_progress(self._task, report.fraction, report.message)
        except Exception:  # best effort: a report that cannot be written must never cost the attempt its outcome
            log.warning("progress not recorded", extra={"task_id": self._task.id}, exc_info=True)
            return
        self.writes += 1


class ProgressWriter:
    """The executor's one daemon thread writing the progress of its running attempts (started on first use)."""

    def __init__(self, poll_s: float = WRITER_POLL_S) -> None:
        self._poll_s = poll_s
        self._reporters: set[ProgressReporter] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, reporter: ProgressReporter) -> None:
        """``reporter`` holds a report: tick it until it is flushed or discarded."""
        with self._changed:
            self._reporters.add(reporter)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tq-progress", daemon=True)
                self._thread.start()
            self._changed.notify()

    def remove(self, reporter: ProgressReporter) -> None:
        """Stop ticking ``reporter``."""
        with self._changed:
            self._reporters.discard(reporter)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._reporters:
                    self._changed.wait()
                reporters = list(self._reporters)
            for reporter in reporters:
                reporter.tick()
            time.sleep(self._poll_s)
