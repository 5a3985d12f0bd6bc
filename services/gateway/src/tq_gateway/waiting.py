"""Requests that hold a thread while they wait for a task (SSE streams, reads with ``wait_s``): bounded per worker
by slots, so the worker's ordinary requests always find a thread.

The worker's thread pool has ``gateway_threads + gateway_streams`` threads (``gunicorn_conf``); a waiting request
takes one of ``gateway_streams`` slots without blocking, or is answered 503 with ``Retry-After`` at once. At most
``gateway_streams`` threads wait, so ``gateway_threads`` stay free for everything else. One principal holds at
most ``gateway_streams_per_principal`` of them, so one tenant cannot take every slot and starve the others.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from types import TracebackType

from tq_gateway.metrics import WAITING_REQUESTS
from tq_gateway.watch import TaskWatch
from tqcore.domain.task import Task
from tqcore.queries import TaskStamp

#: Seconds a client refused a slot should wait before it tries again.
RETRY_AFTER_S = 2


class NoSlot(Exception):
    """Raised when no wait slot of this worker is free to the caller: the replica is full, or the caller holds its
    share of the slots already; try again (or elsewhere)."""

    retry_after_s = RETRY_AFTER_S


class Slot:
    """One taken slot; released once, however often :meth:`release` is called."""

    def __init__(self, slots: Slots, holder: str, kind: str) -> None:
        self._slots = slots
        self._holder = holder
        self._kind = kind
        self._held = True
        self._lock = threading.Lock()

    def release(self) -> None:
        """Give the slot back (a second call does nothing)."""
        with self._lock:
            if not self._held:
                return
            self._held = False
        WAITING_REQUESTS.labels(self._kind).dec()
        self._slots.give_back(self._holder)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


class Slots:
    """``size`` slots for the worker's waiting requests, at most ``per_holder`` of them held by one principal."""

    def __init__(self, size: int, per_holder: int) -> None:
        self._size = size
        self._per_holder = per_holder
        self._lock = threading.Lock()
        self._held: Counter[str] = Counter()

    def take(self, kind: str, holder: str) -> Slot:
        """A slot for a request of ``kind`` (``stream``, ``wait``: the gauge's label) of the principal named
        ``holder``; ``NoSlot`` if none is free, or if ``holder`` has its share already."""
        with self._lock:
            if self._held.total() >= self._size:
                raise NoSlot(f"this replica holds {self._size} streams and waits already; try again shortly")
            if self._held[holder] >= self._per_holder:
                raise NoSlot(
                    f"you hold {self._per_holder} streams and waits on this replica already, your share of its "
                    "slots; end one or try again shortly"
                )
            self._held[holder] += 1
        WAITING_REQUESTS.labels(kind).inc()
        return Slot(self, holder, kind)

    def give_back(self, holder: str) -> None:
        """A slot of ``holder`` is free again (called by :meth:`Slot.release`, once per slot)."""
        with self._lock:
            self._held[holder] -= 1
            if not self._held[holder]:
                del self._held[holder]


def stamp(task: Task) -> TaskStamp:
    """What the watch compares of a task as a request read it."""
    return TaskStamp(task.version, task.status, task.progress)


class Waits:
    """``GET /v1/tasks/{id}?wait_s=``: wait, holding a slot, until the task ends or the time is up."""

    def __init__(self, watch: TaskWatch, slots: Slots) -> None:
        self._watch = watch
        self._slots = slots

    def until_ended(self, task: Task, wait_s: float, holder: str) -> None:
        """Wait up to ``wait_s`` for the task (read by the caller, the principal named ``holder``) to end, i.e. reach
        a terminal status (a repeating task too: a run ending is not the task ending). Returns at once when the
        worker stops."""
        deadline = time.monotonic() + wait_s
        with self._slots.take("wait", holder), self._watch.watching(task.id, stamp(task)) as watcher:
            while True:
                now = watcher.stamp
                if now.status.is_terminal or (left := deadline - time.monotonic()) <= 0:
                    break
                if not watcher.wait(left) and watcher.closed:
                    break
