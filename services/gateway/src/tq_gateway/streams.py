"""``GET /v1/tasks/{id}/stream``: a task's events and progress as Server-Sent Events, as they happen.

Each event is ``id: <seq>``, ``event: <type>``, ``data: <the event as an item of /events>``; progress reports are
``event: progress`` with ``data: {"fraction", "message", "at"}`` and no ``id`` (so ``Last-Event-ID`` stays a seq).
The stream starts after ``Last-Event-ID`` (else from the first event), and ends once the task has ended and its
last event is sent; else after ``max_s`` (the client reconnects with ``Last-Event-ID``), or when the worker stops.
Events are read (from the last one sent on) only when the watch says the task's version moved.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import falcon

from tq_gateway.waiting import Slot, Slots, stamp
from tq_gateway.watch import TaskWatch
from tqcore.domain.codec import event_to_dict, progress_to_dict
from tqcore.domain.model import Event, Progress
from tqcore.domain.task import Task
from tqcore.usecases.management import TaskHistory

#: A keep-alive comment line: proxies and clients see bytes, so an idle stream is not taken for a dead one.
PING = b": ping\n\n"
#: Events read at a time while catching up (a repeating task's long history is streamed a page at a time).
EVENTS_PER_READ = 100
#: ``Last-Event-ID``: an event's seq.
_SEQ = re.compile(r"[0-9]{1,12}", re.ASCII)


@dataclass(frozen=True)
class StreamTiming:
    """How a stream paces itself."""

    #: Seconds without a write after which a keep-alive comment is sent.
    ping_s: float
    #: Seconds a stream lasts at most (the client then reconnects with ``Last-Event-ID``).
    max_s: float
    #: The reconnection delay a client is told (the ``retry:`` field), in milliseconds.
    retry_ms: int
    #: How soon to look again when the watch said the task moved but its events were not readable yet.
    recheck_s: float


def frame(*, data: dict[str, Any], event: str, event_id: int | str | None = None) -> bytes:
    """One SSE message (the JSON is one line: ``json.dumps`` escapes newlines inside strings)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'), ensure_ascii=False)}\n\n".encode()


def event_frame(event: Event) -> bytes:
    """An event of the task's history as a message."""
    return frame(data=event_to_dict(event), event=event.type.value, event_id=event.seq)


def progress_frame(progress: Progress) -> bytes:
    """A progress report as a message (no id)."""
    return frame(data=progress_to_dict(progress) or {}, event="progress")


def in_order(events: Iterable[Event], progress: Progress | None) -> Iterator[bytes]:
    """New events and a new progress report as messages, in the order they happened: the report after the
    events recorded before it (a claim), before those recorded after it (the attempt's outcome)."""
    for event in events:
        if progress is not None and event.at > progress.at:
            yield progress_frame(progress)
            progress = None
        yield event_frame(event)
    if progress is not None:
        yield progress_frame(progress)


def newer(progress: Progress | None, shown: Progress | None) -> bool:
    """Whether a report is newer than the last one shown (a lagging read can return an older one)."""
    return progress is not None and (shown is None or progress.at > shown.at)


def last_event_id(req: falcon.Request, task: Task) -> int:
    """The seq the stream starts after: ``Last-Event-ID`` (an event of this task), else 0."""
    raw = req.get_header("Last-Event-ID")
    if raw is None or not raw.strip():
        return 0
    if not _SEQ.fullmatch(raw.strip()) or int(raw) > task.version:
        raise falcon.HTTPBadRequest(
            title="Bad Request", description=f"Last-Event-ID must be the id of an event of this task, not {raw[:40]!r}"
        )
    return int(raw)


class Pacer:
    """When a stream writes a keep-alive and when it ends: a ping after ``ping_s`` without a write, the end after
    ``max_s`` (the client reconnects)."""

    def __init__(self, timing: StreamTiming) -> None:
        self._ping_s = timing.ping_s
        self._ends_at = time.monotonic() + timing.max_s
        self._written_at = time.monotonic()

    def wrote(self) -> None:
        """A message was written just now."""
        self._written_at = time.monotonic()

    def pause(self, sleep: Callable[[float], object], closed: Callable[[], bool], soon_s: float | None = None) -> bool:
        """``sleep`` (a watcher's wait: it returns early when something moves) at most until the next ping is due,
        counted from the last write whatever woke the stream since (or ``soon_s``, if that is sooner); False when
        the stream must end (its lifetime is over, or ``closed``: the worker stops)."""
        if self.over:
            return False
        now = time.monotonic()
        wait_s = min(self._written_at + self._ping_s, self._ends_at) - now
        sleep(wait_s if soon_s is None else min(wait_s, soon_s))
        return not closed()

    @property
    def over(self) -> bool:
        """Whether the stream's lifetime is over."""
        return time.monotonic() >= self._ends_at

    def keep_alive(self) -> Iterator[bytes]:
        """A ping, if the stream has been silent for ``ping_s``: a client that left makes this write fail, and the
        server closes the stream (freeing its slot)."""
        if time.monotonic() - self._written_at >= self._ping_s:
            yield PING
            self.wrote()


class HeldStream:
    """A stream's messages as the iterator the WSGI server writes, one message a chunk. Closing it (the stream
    ended, or the client left and a write failed) frees its slot, even if it never started."""

    def __init__(self, messages: Generator[bytes], slot: Slot) -> None:
        self._messages = messages
        self._slot = slot

    def __iter__(self) -> HeldStream:
        return self

    def __next__(self) -> bytes:
        return next(self._messages)

    def close(self) -> None:
        """End the stream and free its slot (the WSGI server calls this whatever happened)."""
        try:
            self._messages.close()
        finally:
            self._slot.release()


def retry_line(timing: StreamTiming) -> bytes:
    """A stream's first line: the reconnection delay its client should use."""
    return f"retry: {timing.retry_ms}\n\n".encode()


def send_stream(resp: falcon.Response, stream: HeldStream) -> None:
    """Answer with an SSE stream (its slot taken: a full replica answered 503 before any header)."""
    resp.content_type = "text/event-stream; charset=utf-8"
    resp.set_header("Cache-Control", "no-cache")
    resp.set_header("X-Accel-Buffering", "no")  # nginx and the like: pass each message on at once
    resp.stream = stream


class EventStream(HeldStream):
    """The messages of one task's stream (see the module's docstring)."""

    def __init__(
        self, task: Task, after_seq: int, history: TaskHistory, watch: TaskWatch, slot: Slot, timing: StreamTiming
    ) -> None:
        self._task = task
        self._sent = after_seq
        self._history = history
        self._watch = watch
        self._timing = timing
        super().__init__(self._generate(), slot)

    def _generate(self) -> Generator[bytes]:
        yield retry_line(self._timing)
        pacer = Pacer(self._timing)
        shown: Progress | None = None
        with self._watch.watching(self._task.id, stamp(self._task)) as watcher:
            while True:
                now = watcher.stamp
                progress = now.progress if newer(now.progress, shown) else None
                for message in in_order(self._events_up_to(now.version), progress):
                    yield message
                    pacer.wrote()
                shown = progress or shown
                if now.status.is_terminal and self._sent >= now.version:
                    return
                # When its events lag the stamp, look again in a moment rather than wait for the next move.
                soon_s = self._timing.recheck_s if self._sent < now.version else None
                if not pacer.pause(watcher.wait, lambda: watcher.closed, soon_s):
                    return
                yield from pacer.keep_alive()

    def _events_up_to(self, version: int) -> Iterator[Event]:
        """The events after the last one sent, up to ``version``, read a page at a time as they are sent (a long
        history is never held whole)."""
        while self._sent < version:
            page = self._history.events_after(self._task, self._sent, EVENTS_PER_READ)
            if not page:
                return
            for event in page:
                yield event
                self._sent = event.seq


class TaskFollower:
    """What a resource following one task needs: the history (its access check), the worker's watch, its stream
    slots and the streams' pacing (the API's ``/stream``, the console's task page)."""

    def __init__(self, history: TaskHistory, watch: TaskWatch, slots: Slots, timing: StreamTiming) -> None:
        self._history = history
        self._watch = watch
        self._slots = slots
        self._timing = timing


class TaskEventStream(TaskFollower):
    """``/v1/tasks/{task_id}/stream``."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """The task's events from ``Last-Event-ID`` on (all of them without), then as they happen."""
        task = self._history.visible(task_id, req.context.principal)
        after = last_event_id(req, task)
        # Before any header: a full replica (or the caller's full share of it) answers a plain 503.
        slot = self._slots.take("stream", req.context.principal.name)
        send_stream(resp, EventStream(task, after, self._history, self._watch, slot, self._timing))
