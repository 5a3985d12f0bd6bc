"""The watch: one thread per gateway worker that looks at every task some request waits on or streams, in bulk,
and wakes those requests when their task changes.

A waiting request (``GET /v1/tasks/{id}?wait_s=``) or a stream (``/stream``) registers a :class:`Watcher` and
sleeps on it. Every ``interval_s`` the watch reads the stamps (version, status, progress) of all watched tasks at
once (``TaskQueries.stamps``: one ``BatchGetItem`` per 100 tasks) and wakes the watchers of each task whose stamp
moved. So what the watch costs grows with the distinct tasks watched (a call per 100 of them per round), never
with the watchers: 200 streams of one task, or of 100, are one call a round. While nobody watches, it reads nothing.

Stamps are read eventually consistently and may lag: a watcher treats one as "something may have changed" and
compares it with what it has already seen (level-triggered), never as an edge to act on once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence

from tqcore.queries import TaskStamp

log = logging.getLogger(__name__)

#: Every watch of this process, so a stopping worker can end what they hold (``close_all``).
_WATCHES: weakref.WeakSet[TaskWatch] = weakref.WeakSet()


class Watcher:
    """One request's hold on a watched task: the newest stamp the watch saw, and a wake-up when it moves."""

    def __init__(self, watch: TaskWatch, task_id: str, seed: TaskStamp) -> None:
        self.task_id = task_id
        self._watch = watch
        self._seed = seed
        self._moved = threading.Event()

    @property
    def stamp(self) -> TaskStamp:
        """The newest stamp: the watch's last read of the task, or what the request read itself before the
        watch's first look."""
        return self._watch.stamp_of(self.task_id, self._seed)

    @property
    def closed(self) -> bool:
        """The watch is closing (the worker stops): end the request now."""
        return self._watch.closed

    def wait(self, timeout_s: float) -> bool:
        """Sleep until the task's stamp moves (True) or ``timeout_s`` passes or the watch closes (False)."""
        if self.closed:  # closed before this watcher came: nothing would wake it
            return False
        moved = self._moved.wait(max(timeout_s, 0.0))
        self._moved.clear()  # cleared before the caller reads ``stamp``: a move after this wakes the next wait
        return moved and not self.closed

    def wake(self) -> None:
        """Called by the watch: the stamp moved, or the watch is closing."""
        self._moved.set()


class TaskWatch:
    """Polls the stamps of the watched tasks every ``interval_s`` in a thread of its own, started at the first
    watcher (none at import or app creation)."""

    def __init__(self, read: Callable[[Sequence[str]], dict[str, TaskStamp]], interval_s: float) -> None:
        self._read = read
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._someone_watches = threading.Condition(self._lock)
        self._watchers: dict[str, set[Watcher]] = {}
        self._stamps: dict[str, TaskStamp] = {}
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.closed = False
        _WATCHES.add(self)

    @contextlib.contextmanager
    def watching(self, task_id: str, seed: TaskStamp) -> Iterator[Watcher]:
        """Watch a task for the ``with`` block; ``seed`` is its stamp as the caller just read it."""
        watcher = Watcher(self, task_id, seed)
        with self._lock:
            if not self._watchers:  # the thread sleeps until someone watches
                self._someone_watches.notify()
            self._watchers.setdefault(task_id, set()).add(watcher)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="task-watch", daemon=True)
                self._thread.start()
        try:
            yield watcher
        finally:
            with self._lock:
                left = self._watchers.get(task_id, set())
                left.discard(watcher)
                if not left:
                    self._watchers.pop(task_id, None)
                    self._stamps.pop(task_id, None)

    def stamp_of(self, task_id: str, seed: TaskStamp) -> TaskStamp:
        """The task's last polled stamp, or ``seed`` (what the request read itself) if that is later."""
        with self._lock:
            polled = self._stamps.get(task_id)
        return polled if polled is not None and later(polled, seed) else seed

    def poll(self) -> None:
        """One round: read the stamps of every watched task at once and wake the watchers of those that moved."""
        with self._lock:
            ids = list(self._watchers)
        if not ids:
            return
        found = self._read(ids)
        woken: list[Watcher] = []
        with self._lock:
            for task_id in ids:
                watchers = self._watchers.get(task_id)
                if watchers is None:  # no longer watched
                    continue
                stamp = found.get(task_id)
                # Not found: an eventually consistent read just after the task was created, or a task whose history
                # expired. Nothing to wake anyone for: a stream or wait on a vanished task ends at its own deadline.
                seen = self._stamps.get(task_id)
                if stamp is not None and (seen is None or later(stamp, seen)):
                    self._stamps[task_id] = stamp
                    woken.extend(watchers)
        for watcher in woken:
            watcher.wake()

    def watched(self) -> int:
        """How many distinct tasks are watched now."""
        with self._lock:
            return len(self._watchers)

    def sleep(self, timeout_s: float) -> bool:
        """Sleep ``timeout_s`` without watching a task, cut short when the watch closes; False once it is closed
        (a request that polls on its own pace still ends at once when the worker stops)."""
        return not self._closing.wait(max(timeout_s, 0.0))

    def close(self) -> None:
        """End every watch now (the worker is stopping): each watcher wakes and sees ``closed``."""
        with self._lock:
            self.closed = True
            self._closing.set()
            watchers = [w for group in self._watchers.values() for w in group]
            self._someone_watches.notify()
        for watcher in watchers:
            watcher.wake()

    def _run(self) -> None:
        while True:
            with self._lock:
                # Sleep while nobody watches; else one interval (cut short by close) before the next round.
                while not self._watchers and not self.closed:
                    self._someone_watches.wait()
                if not self.closed:
                    self._someone_watches.wait(self._interval_s)
                if self.closed:
                    return
            try:
                self.poll()
            except Exception:  # an outage must not end the watch: the next round tries again
                log.warning("the task watch could not read task stamps; trying again", exc_info=True)


def later(stamp: TaskStamp, than: TaskStamp) -> bool:
    """Whether ``stamp`` shows the task past ``than``: a newer version, or the same one with a newer progress
    report (a lagging read shows an older one)."""
    if stamp.version != than.version:
        return stamp.version > than.version
    new, old = stamp.progress, than.progress
    return new is not None and (old is None or new.at > old.at)


def close_all() -> None:
    """End the watches of this process (a stopping worker's streams and waits end at once, not at their end)."""
    for watch in list(_WATCHES):
        watch.close()
