"""Heartbeats: every ``TQ_HEARTBEAT_S`` extend each running attempt's lease and its message's visibility.

A beat is one conditional ``UpdateItem`` per attempt, which also returns the lease item: if the task's cancel
was requested meanwhile (its commit flagged the lease), the attempt is told to stop and records the cancel, with
no extra call. An attempt whose lease is gone (the reaper reclaimed it, the task was redriven) is told to stop;
so is one whose lease could not be extended for longer than the lease leaves (the store unreachable): by then the
reaper may have handed the task to someone else. At shutdown, attempts still running after the grace period
are stopped first, then released, so another executor takes them at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tqcore.domain.task import Task
from tqcore.execution import Attempts
from tqcore.ports import LeaseState

log = logging.getLogger(__name__)

#: How long ``release_all`` waits for a stopped attempt's handler process to be gone before releasing it.
STOP_WAIT_S = 5.0


@dataclass(eq=False)
class Active:
    """A running attempt: its task, the flags that stop it, and the SQS message that carried it."""

    task: Task
    message: Any = None
    #: Stop and record nothing (lease lost, shutdown).
    stop: threading.Event = field(default_factory=threading.Event)
    #: Stop because the task was cancelled, and record the cancel.
    cancel: threading.Event = field(default_factory=threading.Event)
    #: Set by the runner once the attempt's handler is no longer running.
    ended: threading.Event = field(default_factory=threading.Event)
    extended_at: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[str, int | None]:
        """Attempts are told apart by their claim, not only their task (a task can be claimed again)."""
        return (self.task.id, self.task.claim_seq)


class Heartbeat:
    """Tracks running attempts and keeps their leases (and messages) alive."""

    def __init__(self, attempts: Attempts, *, interval_s: float, lease_s: int) -> None:
        self._attempts = attempts
        self._interval_s = interval_s
        self._lease_s = lease_s
        self._active: dict[tuple[str, int | None], Active] = {}
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
            self._active[active.key] = active
        return active

    def untrack(self, active: Active) -> None:
        """The attempt ended (only this attempt: a newer claim of the same task stays tracked)."""
        active.ended.set()
        with self._lock:
            if self._active.get(active.key) is active:
                del self._active[active.key]

    def beat(self) -> None:
        """One heartbeat for every running attempt."""
        with self._lock:
            running = list(self._active.values())
        for active in running:
            try:
                state = self._attempts.heartbeat(active.task)
            except Exception as error:  # noqa: BLE001 - try again next beat while the lease has slack
                log.warning("heartbeat failed: %s", error, extra={"task_id": active.task.id})
                if time.monotonic() - active.extended_at > self._lease_s - self._interval_s:
                    log.warning("lease about to run out unextended; stopping", extra={"task_id": active.task.id})
                    active.stop.set()
                continue
            if state is LeaseState.LOST:
                log.warning("lease lost; stopping the attempt", extra={"task_id": active.task.id})
                active.stop.set()
                continue
            if state is LeaseState.CANCEL_REQUESTED and not active.cancel.is_set():
                log.info("task cancelled; stopping the attempt", extra={"task_id": active.task.id})
                active.cancel.set()
            active.extended_at = time.monotonic()
            if active.message is not None:
                with contextlib.suppress(Exception):  # visibility is a courtesy; the lease is what counts
                    active.message.change_visibility(VisibilityTimeout=self._lease_s)

    def release_all(self) -> int:
        """Stop, then give back, every attempt still running (shutdown after the grace period)."""
        with self._lock:
            running = list(self._active.values())
        for active in running:
            active.stop.set()
        released = 0
        for active in running:
            # Only once its handler is gone, so the next attempt never overlaps this one.
            if not active.ended.wait(STOP_WAIT_S):
                log.error("handler did not stop; leaving the task to its lease", extra={"task_id": active.task.id})
                continue
            try:
                self._attempts.release(active.task)
            except Exception:
                log.exception("could not release the attempt", extra={"task_id": active.task.id})
                continue
            if active.message is not None:
                # The task's message group is FIFO: while this message is in flight, SQS holds back the new
                # one the release just sent. Delete it so another executor gets the task now.
                with contextlib.suppress(Exception):
                    active.message.delete()
            released += 1
            log.info("released the attempt at shutdown", extra={"task_id": active.task.id})
        return released

    def stop(self) -> None:
        """Stop beating."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.beat()
