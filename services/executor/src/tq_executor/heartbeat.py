"""Heartbeats: every ``TQ_HEARTBEAT_S`` extend each running attempt's lease and its message's visibility.

An attempt whose lease is gone (the reaper reclaimed it, the task was redriven) is told to stop. At shutdown,
attempts still running after the grace period are released, so another executor takes them at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from tqcore.domain.errors import TqError
from tqcore.domain.task import Task
from tqcore.execution import Attempts

log = logging.getLogger(__name__)


@dataclass
class Active:
    """A running attempt: its task, the flag that stops it, and the SQS message that carried it."""

    task: Task
    message: Any = None
    stop: threading.Event = field(default_factory=threading.Event)


class Heartbeat:
    """Tracks running attempts and keeps their leases (and messages) alive."""

    def __init__(self, attempts: Attempts, *, interval_s: float, lease_s: int) -> None:
        self._attempts = attempts
        self._interval_s = interval_s
        self._lease_s = lease_s
        self._active: dict[str, Active] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        """Start beating in the background."""
        self._thread.start()

    def track(self, task: Task, message: Any) -> Active:
        """Start keeping an attempt alive."""
        active = Active(task, message)
        with self._lock:
            self._active[task.id] = active
        return active

    def untrack(self, task_id: str) -> None:
        """The attempt ended."""
        with self._lock:
            self._active.pop(task_id, None)

    def beat(self) -> None:
        """One heartbeat for every running attempt."""
        with self._lock:
            running = list(self._active.values())
        for active in running:
            try:
                alive = self._attempts.heartbeat(active.task)
            except (TqError, Exception) as error:  # noqa: BLE001 - try again next beat; the lease has slack
                log.warning("heartbeat failed: %s", error, extra={"task_id": active.task.id})
                continue
            if not alive:
                log.warning("lease lost; stopping the attempt", extra={"task_id": active.task.id})
                active.stop.set()
                continue
            if active.message is not None:
                with contextlib.suppress(Exception):  # visibility is a courtesy; the lease is what counts
                    active.message.change_visibility(VisibilityTimeout=self._lease_s)

    def release_all(self) -> int:
        """Stop and give back every attempt still running (shutdown after the grace period)."""
        with self._lock:
            running = list(self._active.values())
        for active in running:
            active.stop.set()
            self._attempts.release(active.task)
            if active.message is not None:
                # The task's message group is FIFO: while this message is in flight, SQS holds back the new
                # one the release just sent. Delete it so another executor gets the task now.
                with contextlib.suppress(Exception):
                    active.message.delete()
            log.info("released the attempt at shutdown", extra={"task_id": active.task.id})
        return len(running)

    def stop(self) -> None:
        """Stop beating."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.beat()
