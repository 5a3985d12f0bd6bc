"""Tasks committed ahead of their time (staged by the scheduler), sent when the time comes by a thread of its own."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
from collections.abc import Callable
from datetime import datetime

from tqcore.domain.task import Task
from tqcore.ports import Clock

log = logging.getLogger(__name__)

#: SQS takes at most ten messages per batch.
SEND_BATCH = 10


class Outbox:
    """Tasks committed ahead of their time, sent when it comes by a thread of its own."""

    def __init__(self, send: Callable[[list[Task]], None], clock: Clock) -> None:
        self._send = send
        self._clock = clock
        self._heap: list[tuple[datetime, int, Task]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="staged-sender", daemon=True)
        self._thread.start()

    def put(self, at: datetime, tasks: list[Task]) -> None:
        """Send ``tasks`` at ``at``."""
        with self._cond:
            for task in tasks:
                heapq.heappush(self._heap, (at, next(self._order), task))
            self._cond.notify()

    def pending(self) -> int:
        """Tasks waiting for their time."""
        with self._cond:
            return len(self._heap)

    def close(self) -> None:
        """Send what is pending, each at its time (at most ``stage_s`` away), then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        if self._closing:
                            return
                        self._cond.wait()
                        continue
                    wait_s = (self._heap[0][0] - self._clock.now()).total_seconds()
                    if wait_s <= 0:
                        break
                    self._cond.wait(min(wait_s, 0.05))  # short waits: an injected clock may jump
                now = self._clock.now()
                due = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
            for start in range(0, len(due), SEND_BATCH):
                try:
                    self._send(due[start : start + SEND_BATCH])
                except Exception:  # the thread must outlive any one send; the reaper re-sends what is lost
                    log.exception("sending staged tasks failed; the reaper will re-send them")
