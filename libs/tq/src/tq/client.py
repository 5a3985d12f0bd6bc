"""``tq.Client`` (and ``tq.AsyncClient``, its asyncio twin in ``tq.async_client``): the tq HTTP API from Python
(contract section 7), over httpx.

```python
import tq

with tq.Client() as client:  # TQ_URL and TQ_TOKEN, or url= and token=
    task = client.submit("echo", "team-a", {"x": 1})
    print(client.wait(task.id).result)
```

The twins share everything but the sending: ``tq.calls`` builds each request and reads its answer, ``tq.follow``
decides the loops of ``wait`` and ``stream``, ``tq.retries`` when to send again; each class only sends and sleeps.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Self, TypeVar

import httpx

from tq import calls
from tq.async_client import AsyncClient
from tq.calls import DEFAULT_TIMEOUT_S, Call
from tq.follow import Streaming, Waiting
from tq.models import BatchItem, CancelledTasks, Event, Overview, Page, ProgressEvent, Queue, Redriven, Run, Task
from tq.retries import Retries, Retrying

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")


class Client:
    """The tq API from synchronous code; a context manager (``with tq.Client() as client:``).

    ``url`` and ``token`` default to ``TQ_URL`` and ``TQ_TOKEN`` (and the URL to ``http://127.0.0.1:8080``).
    Every error answer raises ``tq.ApiError`` (``.status``, ``.problem``); a server out of reach raises its
    subclass ``tq.NetworkError`` (``.status`` ``None``). 429 and 503 are retried as ``retries`` allows, honouring
    ``Retry-After``. ``transport`` (an ``httpx.BaseTransport``) and ``sleep`` are for tests and special setups.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: Retries = Retries(),  # noqa: B008 - frozen: one shared default is safe
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        base_url, headers = calls.connection(url, token)
        self._http = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s, transport=transport)
        self._retries = retries
        self._sleep = sleep

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections."""
        self._http.close()

    def submit(self, type: str, group: str, payload: Any = None, **fields: Any) -> Task:
        """Submit a task; ``fields`` are the other submit fields (``priority``, ``schedule``, ``retry``,
        ``timeout_s``, ``idempotency_key``...). A fresh idempotency key is sent unless one is given, so a retried
        submit never runs twice."""
        return self._send(calls.submit(type, group, payload, fields))

    def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> builtins.list[BatchItem]:
        """Submit many tasks (submit bodies: ``{"type", "group", "payload"...}``), 500 per request; one result per
        task, in order, each with ``.status`` and ``.task`` or ``.error``. Items the gateway answers 503 (storage
        throttled part way through a batch) are sent again with their keys, as ``retries`` allows."""
        many = calls.SubmitMany(tasks, self._retries)
        while True:
            for chunk, call in many.calls():
                many.answered(chunk, self._send(call))
            if (pause := many.pause()) is None:
                return many.results()
            self._sleep(pause)

    def get(self, task_id: str) -> Task:
        """Read a task."""
        return self._send(calls.get(task_id))

    def wait(self, task_id: str, timeout_s: float | None = None) -> Task:
        """The task once it has ended (``task.ended``), or as it is after ``timeout_s`` (``None``: no limit)."""
        waiting = Waiting(task_id, timeout_s)
        task = self._send(waiting.first())
        while (step := waiting.next(task)) is not None:
            pause, call = step
            if pause:
                self._sleep(pause)
            task = self._send(call)
        return task

    def stream(self, task_id: str) -> Iterator[Event | ProgressEvent]:
        """The task's events as they happen (from its first; ``ProgressEvent`` for progress reports) until it has
        ended; a broken connection is resumed after the last event seen."""
        streaming = Streaming(task_id)
        while True:
            try:
                response = self._open(streaming.call())
                try:
                    for line in response.iter_lines():
                        if (event := streaming.feed(line)) is not None:
                            yield event
                finally:
                    response.close()
            except httpx.TransportError as error:
                self._sleep(streaming.broke(error))
                continue
            pause = streaming.after_end(self.get(task_id))
            if pause is None:
                return
            self._sleep(pause)

    def list(
        self, group: str | None = None, status: str | None = None, type: str | None = None, *, name: str | None = None
    ) -> Iterator[Task]:
        """Every task matching the filters (``name``: contains it, ignoring case), newest first, a page at a time."""
        return self._items(lambda cursor: calls.list_page(group, status, type, None, cursor, name))

    def list_page(
        self,
        group: str | None = None,
        status: str | None = None,
        type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        *,
        name: str | None = None,
    ) -> Page[Task]:
        """One page of tasks (``limit`` 1-200), as ``GET /v1/tasks`` answers it."""
        return self._send(calls.list_page(group, status, type, limit, cursor, name))

    def update(self, task_id: str, if_match: int | str | None = None, **changes: Any) -> Task:
        """Change a task (``payload``, ``priority``, ``schedule``...); with ``if_match``, only at that version."""
        return self._send(calls.update(task_id, if_match, changes))

    def cancel(self, task_id: str, if_match: int | str | None = None) -> Task:
        """Cancel a task (a running attempt is told to stop)."""
        return self._send(calls.cancel(task_id, if_match))

    def pause(self, task_id: str) -> Task:
        """Pause a repeating task: it starts no attempt until resumed (an attempt running finishes first)."""
        return self._send(calls.pause(task_id))

    def resume(self, task_id: str) -> Task:
        """Resume a paused task with its next slot (the slots missed meanwhile are recorded as skipped)."""
        return self._send(calls.resume(task_id))

    def runs(self, task_id: str) -> Iterator[Run]:
        """The task's runs (one per attempt), newest first."""
        return self._items(lambda cursor: calls.runs_page(task_id, cursor))

    def log(self, task_id: str, run_id: str) -> str:
        """An attempt's captured output and log lines."""
        return self._send(calls.log(task_id, run_id))

    def events(self, task_id: str) -> Iterator[Event]:
        """The task's event history, oldest first."""
        return self._items(lambda cursor: calls.events_page(task_id, cursor))

    def dlq(self, group: str | None = None, type: str | None = None) -> Iterator[Task]:
        """The group's dead-lettered (failed) tasks (of ``type`` if given), newest first."""
        return self._items(lambda cursor: calls.dlq_page(group, None, cursor, type))

    def dlq_page(
        self, group: str | None = None, limit: int | None = None, cursor: str | None = None, type: str | None = None
    ) -> Page[Task]:
        """One page of dead letters, as ``GET /v1/dlq`` answers it."""
        return self._send(calls.dlq_page(group, limit, cursor, type))

    def schedules(self, group: str | None = None, type: str | None = None) -> Iterator[Task]:
        """Repeating tasks not yet ended (paused ones too) and one-off tasks waiting for their time, newest first."""
        return self._items(lambda cursor: calls.schedules_page(group, type, None, cursor))

    def schedules_page(
        self, group: str | None = None, type: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[Task]:
        """One page of schedules, as ``GET /v1/schedules`` answers it."""
        return self._send(calls.schedules_page(group, type, limit, cursor))

    def redrive(self, task_id: str) -> Task:
        """Queue a failed task again with a fresh retry budget."""
        return self._send(calls.redrive(task_id))

    def redrive_dlq(
        self,
        group: str,
        ids: builtins.list[str] | None = None,
        limit: int | None = None,
        dry_run: bool = False,
        type: str | None = None,
    ) -> Redriven:
        """Redrive the group's dead letters (of ``type`` if given): ``ids``, or else the newest ``limit``; a dry
        run changes nothing."""
        return self._send(calls.redrive_dlq(group, ids, limit, dry_run, type))

    def cancel_many(
        self,
        group: str,
        ids: builtins.list[str] | None = None,
        status: str | None = None,
        type: str | None = None,
        limit: int | None = None,
        dry_run: bool = False,
    ) -> CancelledTasks:
        """Cancel the group's tasks (each as :meth:`cancel` does): ``ids``, or else the newest ``limit`` (server
        default 100, at most 1000) that match ``status`` and ``type``; tasks already ended and ids outside the group
        are skipped. A dry run changes nothing and names the tasks it would cancel."""
        return self._send(calls.cancel_many(group, ids, status, type, limit, dry_run))

    def queues(self) -> builtins.list[Queue]:
        """The queues with their approximate depths."""
        return self._send(calls.queues())

    def overview(self) -> Overview:
        """The system at a glance: pools with their queues and executors, live replicas, the last 15 minutes'
        throughput, the scheduler's lag, and dead letters of the caller's groups."""
        return self._send(calls.overview())

    def _items(self, page: Callable[[str | None], Call[Page[T]]]) -> Iterator[T]:
        cursor = None
        while True:
            answer = self._send(page(cursor))
            yield from answer.items
            if not answer.next_cursor:
                return
            cursor = answer.next_cursor

    def _send(self, call: Call[T]) -> T:
        return call.read(self._respond(call, stream=False))

    def _open(self, call: Call[None]) -> httpx.Response:
        response = self._respond(call, stream=True)
        if not response.is_success:
            response.read()
            response.close()
        call.read(response)
        return response

    def _respond(self, call: Call[Any], *, stream: bool) -> httpx.Response:
        retrying = Retrying(self._retries, call.repeatable)
        while True:
            try:
                response = self._http.send(call.request(self._http), stream=stream)
            except httpx.TransportError as error:
                pause = retrying.after_error(error)
            else:
                answered = retrying.after_response(response)
                if answered is None:
                    return response
                pause = answered
                response.close()
            self._sleep(pause)
