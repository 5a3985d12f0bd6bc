"""Heartbeats: keep each running attempt's lease alive, on its own schedule, never waiting on another's beat.

A beat is one conditional ``UpdateItem`` that extends the lease to now + ``TQ_LEASE_S`` and returns the lease
item: if the task's cancel was requested meanwhile (its commit flagged the lease), the attempt is told to stop
and records the cancel, with no extra call. An attempt is beaten ``TQ_HEARTBEAT_S`` after its claim or its last
beat (a task shorter than that costs no beat), on a small pool with at most one beat in flight per attempt: one
slow call delays only its own attempt's beat. The loop that starts beats also watches every attempt's last
confirmed lease expiry and stops (kills the handler of) an attempt ``margin_s`` before its lease would lapse
unextended, so the reaper's re-run never overlaps it; an attempt whose lease is gone (reclaimed, redriven) is
stopped at once. At shutdown, attempts still running after the grace are stopped first, then released.

The visibility of the attempts' SQS messages is kept by the broker's ``VisibilityKeeper`` (batched, together
with the messages buffered unstarted), not here.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tqcore.domain.task import Task
from tqcore.ports import LeaseState
from tqcore.settings import STOP_MARGIN_S
from tqcore.usecases.execution import Attempts

log = logging.getLogger(__name__)

#: How long ``release_all`` waits for a stopped attempt's handler process to be gone before releasing it.
STOP_WAIT_S = 5.0
#: How often the loop looks at the attempts' deadlines and starts the beats that are due.
TICK_S = 0.1
# ``STOP_MARGIN_S``: an attempt whose lease was not extended is stopped this long before the lease's last
# confirmed expiry. Its handler must be dead before the reaper may reclaim the lease, i.e. before ``expires_at`` on
# the reaper's clock. That takes a loop tick (0.1 s), the worker thread's poll of its stop flag (0.05 s) and a
# SIGKILL with its wait (milliseconds); hosts' clocks agree within milliseconds under NTP (Amazon Time Sync), and
# 2 s covers all of it with room for a stalled executor. The re-run itself starts later still (reaper pass, retry
# backoff, scheduler, claim). The settings refuse a lease less than twice the margin longer than the heartbeat, so
# a due beat has at least the margin's time to extend the lease; the cap below only guards hand-built heartbeats.


def stop_margin_s(lease_s: float, heartbeat_s: float) -> float:
    """``STOP_MARGIN_S``, capped at half the slack between beats (``lease_s - heartbeat_s``)."""
    return max(0.0, min(STOP_MARGIN_S, (lease_s - heartbeat_s) / 2))


def call_deadline_s(lease_s: float, heartbeat_s: float) -> float:
    """How long each of a heartbeat call's two tries may take: half the time a due beat has before its attempt
    is stopped, at least 2 s. Long enough for a slow store to answer the first try, short enough that a stuck
    call frees its pool thread within about that time and a call that failed fast is retried in time."""
    return max(2.0, (lease_s - heartbeat_s - stop_margin_s(lease_s, heartbeat_s)) / 2)


@dataclass(eq=False)
class Active:
    """A running attempt: its task, the flags that stop it, the SQS message that carried it, its lease's clock."""

    task: Task
    #: The lease's last confirmed expiry: the claim's, then (start of the last beat that succeeded) + lease.
    lease_until: datetime
    #: When the next beat is due.
    next_beat_at: datetime
    message: Any = None
    #: Stop and record nothing (lease lost or about to lapse, shutdown).
    stop: threading.Event = field(default_factory=threading.Event)
    #: Stop because the task was cancelled, and record the cancel.
    cancel: threading.Event = field(default_factory=threading.Event)
    #: Set by the runner once the attempt's handler is no longer running.
    ended: threading.Event = field(default_factory=threading.Event)
    #: A beat of this attempt is in flight (one at a time).
    beating: bool = False

    @property
    def key(self) -> tuple[str, int | None]:
        """Attempts are told apart by their claim, not only their task (a task can be claimed again)."""
        return (self.task.id, self.task.claim_seq)


class Heartbeat:
    """Tracks running attempts and keeps their leases alive, stopping any whose lease is about to lapse."""

    def __init__(self, attempts: Attempts, *, interval_s: float, lease_s: int, parallel: int = 8) -> None:
        self._attempts = attempts
        self._clock = attempts.clock
        self._interval = timedelta(seconds=interval_s)
        self._lease = timedelta(seconds=lease_s)
        self._margin = timedelta(seconds=stop_margin_s(lease_s, interval_s))
        self._active: dict[tuple[str, int | None], Active] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        # Twice the attempts that can run: a stopped attempt's beat may stay in flight until its call's deadline
        # while the worker thread's next attempt needs a beat of its own.
        self._pool = ThreadPoolExecutor(max_workers=2 * parallel, thread_name_prefix="heartbeat-beat")

    def start(self) -> None:
        """Start beating in the background."""
        self._thread.start()

    def track(self, task: Task, message: Any) -> Active:
        """Start keeping a freshly claimed attempt alive."""
        until = task.lease_expires_at or self._clock.now() + self._lease
        active = Active(task, until, until - self._lease + self._interval, message)
        with self._lock:
            self._active[active.key] = active
        return active

    def untrack(self, active: Active) -> None:
        """The attempt ended (only this attempt: a newer claim of the same task stays tracked)."""
        active.ended.set()
        with self._lock:
            if self._active.get(active.key) is active:
                del self._active[active.key]

    def tick(self) -> list[Future[None]]:
        """One pass of the loop: stop the attempts whose lease would lapse unextended, start the beats due."""
        now = self._clock.now()
        started: list[Future[None]] = []
        for active in self._running():
            if active.stop.is_set():
                continue
            if now + self._margin >= active.lease_until:
                log.warning(
                    "lease not extended in time; stopping the attempt %.1f s before it lapses",
                    (active.lease_until - now).total_seconds(),
                    extra={"task_id": active.task.id},
                )
                active.stop.set()
            elif not active.beating and now >= active.next_beat_at:
                started.append(self._start_beat(active))
        return started

    def beat(self) -> None:
        """Beat every running attempt now (those without a beat in flight), and wait for the beats."""
        wait([self._start_beat(active) for active in self._running() if not active.beating])

    def _running(self) -> list[Active]:
        with self._lock:
            return list(self._active.values())

    def _start_beat(self, active: Active) -> Future[None]:
        active.beating = True
        return self._pool.submit(self._beat_one, active)

    def _beat_one(self, active: Active) -> None:
        try:
            self._extend(active)
        finally:
            active.beating = False

    def _extend(self, active: Active) -> None:
        sent = self._clock.now()  # the extended lease runs from no earlier than this
        try:
            state = self._attempts.heartbeat(active.task)
        except Exception as error:  # noqa: BLE001 - try again soon; the loop stops the attempt before the lease lapses
            log.warning("heartbeat failed: %s", error, extra={"task_id": active.task.id})
            active.next_beat_at = self._clock.now() + self._interval / 2
            return
        if state is LeaseState.LOST:
            log.warning("lease lost; stopping the attempt", extra={"task_id": active.task.id})
            active.stop.set()
        elif state is LeaseState.CANCEL_REQUESTED and not active.cancel.is_set():
            log.info("task cancelled; stopping the attempt", extra={"task_id": active.task.id})
            active.cancel.set()
        active.lease_until = sent + self._lease
        active.next_beat_at = sent + self._interval

    def release_all(self) -> int:
        """Stop, then give back, every attempt still running (shutdown after the grace period)."""
        running = self._running()
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
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except Exception:  # the loop must outlive any one pass: it is what stops attempts in time
                log.exception("heartbeat pass failed")
