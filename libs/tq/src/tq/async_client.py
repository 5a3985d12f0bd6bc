"""``tq.AsyncClient``: ``tq.Client``'s twin for asyncio. Both build their requests with ``tq.calls``, follow tasks
with ``tq.follow`` and retry as ``tq.retries`` decides; this one awaits where the other blocks."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Self, TypeVar

import httpx

from tq import calls
from tq.calls import DEFAULT_TIMEOUT_S, Call
from tq.follow import Streaming, Waiting
from tq.models import BatchItem, CancelledTasks, Event, Overview, Page, ProgressEvent, Queue, Redriven, Run, Task
from tq.retries import Retries, Retrying

T = TypeVar("T")


class AsyncClient:
    """``Client``'s twin for asyncio: the same methods, awaitable (listings and ``stream`` are async iterators);
    an async context manager (``async with tq.AsyncClient() as client:``)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: Retries = Retries(),  # noqa: B008 - frozen: one shared default is safe
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        base_url, headers = calls.connection(url, token)
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout_s, transport=transport)
        self._retries = retries
        self._sleep = sleep

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._http.aclose()

    async def submit(self, type: str, group: str, payload: Any = None, **fields: Any) -> Task:
        """See ``Client.submit``."""
        return await self._send(calls.submit(type, group, payload, fields))

    async def submit_many(self, tasks: Iterable[Mapping[str, Any]]) -> builtins.list[BatchItem]:
        """See ``Client.submit_many``."""
        many = calls.SubmitMany(tasks, self._retries)
        while True:
            for chunk, call in many.calls():
                many.answered(chunk, await self._send(call))
            if (pause := many.pause()) is None:
                return many.results()
            await self._sleep(pause)

    async def get(self, task_id: str) -> Task:
        """See ``Client.get``."""
        return await self._send(calls.get(task_id))

    async def wait(self, task_id: str, timeout_s: float | None = None) -> Task:
        """See ``Client.wait``."""
        waiting = Waiting(task_id, timeout_s)
        task = await self._send(waiting.first())
        while (step := waiting.next(task)) is not None:
            pause, call = step
            if pause:
                await self._sleep(pause)
            task = await self._send(call)
        return task

    async def stream(self, task_id: str) -> AsyncIterator[Event | ProgressEvent]:
        """See ``Client.stream``."""
        streaming = Streaming(task_id)
        while True:
            try:
                response = await self._open(streaming.call())
                try:
                    async for line in response.aiter_lines():
                        if (event := streaming.feed(line)) is not None:
                            yield event
                finally:
                    await response.aclose()
            except httpx.TransportError as error:
                await self._sleep(streaming.broke(error))
                continue
            pause = streaming.after_end(await self.get(task_id))
            if pause is None:
                return
            await self._sleep(pause)

    def list(
        self,
        group: str | None = None,
        status: str | None = None,
        type: str | None = None,
        *,
        name: str | None = None,
    ) -> AsyncIterator[Task]:
        """See ``Client.list``."""
        return self._items(lambda cursor: calls.list_page(group, status, type, None, cursor, name))

    async def list_page(
        self,
        group: str | None = None,
        status: str | None = None,
        type: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        *,
        name: str | None = None,
    ) -> Page[Task]:
        """See ``Client.list_page``."""
        return await self._send(calls.list_page(group, status, type, limit, cursor, name))

    async def update(self, task_id: str, if_match: int | str | None = None, **changes: Any) -> Task:
        """See ``Client.update``."""
        return await self._send(calls.update(task_id, if_match, changes))

    async def cancel(self, task_id: str, if_match: int | str | None = None) -> Task:
        """See ``Client.cancel``."""
        return await self._send(calls.cancel(task_id, if_match))

    async def pause(self, task_id: str) -> Task:
        """See ``Client.pause``."""
        return await self._send(calls.pause(task_id))

    async def resume(self, task_id: str) -> Task:
        """See ``Client.resume``."""
        return await self._send(calls.resume(task_id))

    def runs(self, task_id: str) -> AsyncIterator[Run]:
        """See ``Client.runs``."""
        return self._items(lambda cursor: calls.runs_page(task_id, cursor))

    async def log(self, task_id: str, run_id: str) -> str:
        """See ``Client.log``."""
        return await self._send(calls.log(task_id, run_id))

    def events(self, task_id: str) -> AsyncIterator[Event]:
        """See ``Client.events``."""
        return self._items(lambda cursor: calls.events_page(task_id, cursor))

    def dlq(self, group: str | None = None, type: str | None = None) -> AsyncIterator[Task]:
        """See ``Client.dlq``."""
        return self._items(lambda cursor: calls.dlq_page(group, None, cursor, type))

    async def dlq_page(
        self, group: str | None = None, limit: int | None = None, cursor: str | None = None, type: str | None = None
    ) -> Page[Task]:
        """See ``Client.dlq_page``."""
        return await self._send(calls.dlq_page(group, limit, cursor, type))

    def schedules(self, group: str | None = None, type: str | None = None) -> AsyncIterator[Task]:
        """See ``Client.schedules``."""
        return self._items(lambda cursor: calls.schedules_page(group, type, None, cursor))

    async def schedules_page(
        self, group: str | None = None, type: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> Page[Task]:
        """See ``Client.schedules_page``."""
        return await self._send(calls.schedules_page(group, type, limit, cursor))

    async def redrive(self, task_id: str) -> Task:
        """See ``Client.redrive``."""
        return await self._send(calls.redrive(task_id))

    async def redrive_dlq(
        self,
        group: str,
        ids: builtins.list[str] | None = None,
        limit: int | None = None,
        dry_run: bool = False,
        type: str | None = None,
    ) -> Redriven:
        """See ``Client.redrive_dlq``."""
        return await self._send(calls.redrive_dlq(group, ids, limit, dry_run, type))

    async def cancel_many(
        self,
        group: str,
        ids: builtins.list[str] | None = None,
        status: str | None = None,
        type: str | None = None,
        limit: int | None = None,
        dry_run: bool = False,
    ) -> CancelledTasks:
        """See ``Client.cancel_many``."""
        return await self._send(calls.cancel_many(group, ids, status, type, limit, dry_run))

    async def queues(self) -> builtins.list[Queue]:
        """See ``Client.queues``."""
        return await self._send(calls.queues())

    async def overview(self) -> Overview:
        """See ``Client.overview``."""
        return await self._send(calls.overview())

    async def _items(self, page: Callable[[str | None], Call[Page[T]]]) -> AsyncIterator[T]:
        cursor = None
        while True:
            answer = await self._send(page(cursor))
            for item in answer.items:
                yield item
            if not answer.next_cursor:
                return
            cursor = answer.next_cursor

    async def _send(self, call: Call[T]) -> T:
        return call.read(await self._respond(call, stream=False))

    async def _open(self, call: Call[None]) -> httpx.Response:
        response = await self._respond(call, stream=True)
        if not response.is_success:
            await response.aread()
            await response.aclose()
        call.read(response)
        return response

    async def _respond(self, call: Call[Any], *, stream: bool) -> httpx.Response:
        retrying = Retrying(self._retries, call.repeatable)
        while True:
            try:
                response = await self._http.send(call.request(self._http), stream=stream)
            except httpx.TransportError as error:
                pause = retrying.after_error(error)
            else:
                answered = retrying.after_response(response)
                if answered is None:
                    return response
                pause = answered
                await response.aclose()
            await self._sleep(pause)
