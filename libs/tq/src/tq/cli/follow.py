"""Following a task until it ends: what ``watch``, ``submit --wait`` and ``logs --follow`` show.

:class:`Follower` turns the task's event stream (``client.stream``) into :class:`Update`s: its status and
attempt after every event, its progress, and each attempt's log once the executor has uploaded it (run logs
reach the store when an attempt ends, so an attempt's lines arrive together, after it). When the gateway has no
stream to give (an older gateway, or a replica whose stream slots are full), it falls back to ``client.wait``
with a short timeout, which shows the same things at that pace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tq.cli.render import doc
from tq.errors import ApiError
from tq.models import ENDED, ProgressEvent

if TYPE_CHECKING:
    from tq.client import Client

#: How long one ``wait`` of the fallback lasts: the pace at which it shows progress.
WAIT_SLICE_S = 2.0
#: The least time between two fallback reads, should a gateway answer a wait at once.
MIN_POLL_S = 0.5
#: Statuses of the stream's own answer after which waiting is the better way (no stream here, or no slot).
_NO_STREAM = frozenset({404, 405, 501, 503})


@dataclass(frozen=True)
class Status:
    """The task as it is now (its API document)."""

    task: dict[str, Any]


@dataclass(frozen=True)
class Progress:
    """The handler's latest progress report."""

    fraction: float | None
    message: str | None


@dataclass(frozen=True)
class Log:
    """One attempt's whole log, once it is stored."""

    run: dict[str, Any]
    text: str


Update = Status | Progress | Log


class Follower:
    """Updates of one task until it ends; :attr:`task` is its last known document."""

    def __init__(
        self, client: Client, task_id: str, *, logs: bool = True, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._client = client
        self._sleep = sleep
        self._id = task_id
        self._logs = logs
        self._shown: set[str] = set()
        self._progress: tuple[Any, Any] | None = None
        self.task: dict[str, Any] = {}

    def updates(self) -> Iterator[Update]:
        """Updates from the stream, or from waits when there is no stream; ends once the task has ended."""
        yield from self._status()
        if self.task["status"] in ENDED:
            return
        try:
            yield from self._from_stream()
        except ApiError as error:
            if error.status is not None and error.status not in _NO_STREAM:
                raise
        yield from self._from_waits()

    def _from_stream(self) -> Iterator[Update]:
        for event in self._client.stream(self._id):
            if isinstance(event, ProgressEvent):
                yield from self._progress_update(event.fraction, event.message)
            else:
                yield from self._status()
            if self.task.get("status") in ENDED:
                return

    def _from_waits(self) -> Iterator[Update]:
        while self.task["status"] not in ENDED:
            started = time.monotonic()
            yield from self._status(wait_s=WAIT_SLICE_S)
            progress = self.task.get("progress") or {}
            yield from self._progress_update(progress.get("fraction"), progress.get("message"))
            self._sleep(max(0.0, MIN_POLL_S - (time.monotonic() - started)))

    def _status(self, wait_s: float | None = None) -> Iterator[Update]:
        task = self._client.wait(self._id, timeout_s=wait_s) if wait_s else self._client.get(self._id)
        changed = doc(task)
        if changed != self.task:
            attempt_moved = (changed.get("attempts"), changed.get("status")) != (
                self.task.get("attempts"),
                self.task.get("status"),
            )
            self.task = changed
            yield Status(changed)
            if attempt_moved and self._logs:
                yield from self._new_logs()

    def _progress_update(self, fraction: Any, message: Any) -> Iterator[Update]:
        if (fraction, message) != self._progress and (fraction is not None or message is not None):
            self._progress = (fraction, message)
            yield Progress(fraction, message)

    def _new_logs(self) -> Iterator[Update]:
        """The logs of the attempts that ended since the last look, oldest first."""
        ended = [run for run in map(doc, self._client.runs(self._id)) if run.get("log_size") is not None]
        for run in reversed(ended):
            if run["run_id"] not in self._shown:
                self._shown.add(run["run_id"])
                try:
                    text = self._client.log(self._id, run["run_id"])
                except ApiError as error:
                    if error.status not in (404, 410):
                        raise
                    text = ""
                yield Log(run, text)
