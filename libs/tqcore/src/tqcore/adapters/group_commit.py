"""Group commit: concurrent callers' requests sent together, each caller answered only once its own was answered.

No thread of its own: the caller that finds a flush slot free sends at once (no added latency at light load);
callers arriving while ``max_inflight`` flushes are in flight queue up, and when a flush ends, the caller at the
head of the queue is woken to send everything queued (as much as one call takes) in the next one. A flusher that
starts while another flush is in flight may first wait ``linger_s`` for more requests to join.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Pending(Generic[T]):
    """One caller's request and, once the flush that carried it is answered, its result or error."""

    request: T
    result: Any = None
    error: BaseException | None = None
    done: bool = False
    #: Woken to flush (it holds a slot now).
    promoted: bool = False
    wake: threading.Event = field(default_factory=threading.Event)


#: Sends a batch; must settle every pending of it (``GroupCommit.settle``), raising only for a bug.
Send = Callable[[list[Pending[T]]], None]
#: Takes the next batch out of the queue (its head at least), leaving what must wait for a later flush.
Select = Callable[[list[Pending[T]]], list[Pending[T]]]


class GroupCommit(Generic[T]):
    """Requests of concurrent threads sent in shared calls (see the module's docstring)."""

    def __init__(self, send: Send[T], select: Select[T], *, max_inflight: int, linger_s: float = 0.0) -> None:
        self._send = send
        self._select = select
        self._max_inflight = max(1, max_inflight)
        self._linger_s = linger_s
        self._lock = threading.Lock()
        self._queue: list[Pending[T]] = []
        self._inflight = 0

    @property
    def waiting(self) -> int:
        """Requests queued for a flush (not yet sent)."""
        with self._lock:
            return len(self._queue)

    def submit(self, request: T) -> Any:
        """Send ``request`` (alone or with others) and return its result, or raise its error."""
        me: Pending[T] = Pending(request)
        with self._lock:
            self._queue.append(me)
            leading = self._inflight < self._max_inflight
            if leading:
                self._inflight += 1
            linger = self._inflight > 1
        while True:
            if leading:
                self._flush_while_needed(me, linger)
                linger = False  # promoted later: the queue it flushes has been filling meanwhile
            else:
                me.wake.wait()
                linger = False  # promoted: the queue it flushes has been filling while it waited
            with self._lock:
                if me.done:
                    break
                leading, me.promoted = me.promoted, False
                if not leading:
                    me.wake.clear()
        if me.error is not None:
            raise me.error
        return me.result

    def _flush_while_needed(self, me: Pending[T], linger: bool) -> None:
        """Holding a slot: flush the queue's head until ours is sent (or taken by another flush), then give the
        slot to the next queued caller."""
        try:
            while True:
                if linger and self._linger_s > 0:
                    time.sleep(self._linger_s)
                with self._lock:
                    batch = self._select(self._queue) if self._queue else []
                    taken = me not in self._queue
                if not batch:
                    return
                self._flush(batch)
                if taken or me.done:
                    return
        finally:
            with self._lock:
                self._inflight -= 1
                self._promote()

    def _flush(self, batch: list[Pending[T]]) -> None:
        try:
            self._send(batch)
        except BaseException as error:  # a bug in send: no caller may wait for ever
            for pending in batch:
                if not pending.done:
                    self.settle(pending, error=error)
            if not isinstance(error, Exception):
                raise

    def _promote(self) -> None:
        """Wake queued callers to flush while slots are free (lock held)."""
        for pending in self._queue:
            if self._inflight >= self._max_inflight:
                return
            if not pending.promoted:
                pending.promoted = True
                self._inflight += 1
                pending.wake.set()

    def settle(self, pending: Pending[T], *, result: Any = None, error: BaseException | None = None) -> None:
        """Answer one caller."""
        with self._lock:
            pending.result, pending.error, pending.done = result, error, True
            if pending.promoted:  # it was promoted but its request went in another flush: give the slot back
                pending.promoted = False
                self._inflight -= 1
                self._promote()
        pending.wake.set()
