"""Following a task until it ends: the loops of ``wait`` and ``stream`` as decisions without I/O, so the sync and
async clients share them and differ only in how they send and sleep."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import httpx
from pydantic import ValidationError

from tq import calls
from tq.errors import NetworkError
from tq.models import Event, ProgressEvent, Task
from tq.sse import SseDecoder

#: The server sends a keep-alive comment about this often; a stream silent for longer than this plus
#: ``calls.READ_GRACE_S`` is broken.
PING_S = 15.0
#: A wait answered this much sooner than asked, with the task not ended, came from a server that does not wait:
#: poll it no faster than :data:`POLL_S`.
EARLY_S = 1.0
POLL_S = 1.0
#: Broken stream connections in a row (no event between them) before ``stream`` gives up.
MAX_BREAKS = 5


class Waiting:
    """``wait``: ``GET ?wait_s=`` (at most 30 s each) until the task has ended or ``timeout_s`` has passed."""

    def __init__(self, task_id: str, timeout_s: float | None, now: Callable[[], float] = time.monotonic) -> None:
        self._task_id = task_id
        self._now = now
        self._deadline = None if timeout_s is None else now() + timeout_s
        self._sent_at = now()
        self._asked_s = 0

    def first(self) -> calls.Call[Task]:
        """The first call."""
        return self._call(self._left(), 0.0)

    def next(self, task: Task) -> tuple[float, calls.Call[Task]] | None:
        """The pause and the call to make next, or ``None`` when ``task`` (the last answer) is the result."""
        left = self._left()
        if task.ended or left <= 0:
            return None
        early = self._now() - self._sent_at < self._asked_s - EARLY_S
        pause = min(POLL_S, left) if early else 0.0
        return pause, self._call(left, pause)

    def _left(self) -> float:
        return math.inf if self._deadline is None else self._deadline - self._now()

    def _call(self, left: float, pause: float) -> calls.Call[Task]:
        self._asked_s = max(1, math.ceil(min(calls.MAX_WAIT_S, left - pause))) if left > 0 else 0
        self._sent_at = self._now() + pause
        return calls.get(self._task_id, self._asked_s)


class Streaming:
    """``stream``: read the task's event stream, resuming after the last event seen (``Last-Event-ID``) when the
    connection breaks or the server ends the stream before the task has ended."""

    def __init__(self, task_id: str) -> None:
        self._task_id = task_id
        self._decoder = SseDecoder()
        self._last_id: str | None = None
        self._breaks = 0
        self._replayed_end = False

    def call(self) -> calls.Call[None]:
        """The stream's request, after the last event seen."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self._last_id is not None:
            headers["Last-Event-ID"] = self._last_id
        path = calls.task_path(self._task_id, "stream")
        return calls.Call("GET", path, calls.no_body, headers=headers, read_timeout_s=PING_S + calls.READ_GRACE_S)

    def feed(self, line: str) -> Event | ProgressEvent | None:
        """The event this line of the stream completes, if any."""
        message = self._decoder.feed(line)
        if message is None:
            return None
        model: type[Event | ProgressEvent] = ProgressEvent if message.event == "progress" else Event
        try:
            item = model.model_validate_json(message.data)
        except ValidationError as error:
            where = f"GET {calls.task_path(self._task_id, 'stream')}"
            raise calls.unexpected(200, where, model.__name__, error) from error
        if message.id is not None:
            self._last_id = message.id
        self._breaks = 0
        return item

    def broke(self, error: httpx.TransportError) -> float:
        """The pause before resuming after a broken connection; raises :class:`NetworkError` after
        :data:`MAX_BREAKS` breaks in a row."""
        self._breaks += 1
        if self._breaks > MAX_BREAKS:
            raise NetworkError(f"the event stream broke {MAX_BREAKS} times in a row: {type(error).__name__}")
        return self._server_pause() or 0.5 * 2 ** (self._breaks - 1)

    def after_end(self, task: Task) -> float | None:
        """After the server ended the stream, given the task as it is now: ``None`` when every event has been read
        (the task ended, and its last change is an event seen here or the stream was already resumed once), else
        the pause before resuming (the server's ``retry:`` hint, as an EventSource would wait)."""
        if task.ended:
            seen = int(self._last_id) if self._last_id and self._last_id.isdigit() else 0
            if seen >= task.version or self._replayed_end:
                return None
            self._replayed_end = True  # it ended while the stream was closing: one more stream replays the rest
            return 0.0
        return self._server_pause() or 0.0

    def _server_pause(self) -> float | None:
        return None if self._decoder.retry_ms is None else self._decoder.retry_ms / 1000
