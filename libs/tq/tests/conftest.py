"""The client against the gateway app in-process (over tqcore's in-memory fakes): no server, no sockets.

``Gateway`` holds the fakes, finishes tasks as an executor would, and hands out clients whose httpx transport
calls the WSGI app directly (the async client's runs it in a thread); the transport records every request and
can break a connection before or after the app has answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest

import tq
from tq.retries import Retries
from tq_gateway.settings import GatewaySettings
from tq_gateway.testing import app_over_fakes
from tqcore.domain.model import ErrorInfo, Progress, RunLog
from tqcore.domain.task import Task
from tqcore.errors import StoreUnavailable
from tqcore.ports import IdempotencyRecord
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryRunLogs, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import mutate

WORKER = "host-a:1"
#: The gateway's watch looks every 50 ms, so waits and streams answer quickly.
FAST = GatewaySettings(watch_interval_s=0.05, stream_ping_s=5, stream_max_s=10)
#: No pause is long in unit tests: the client's pauses are recorded, and slept a hundredth of.
TEST_RETRIES = Retries(attempts=4, max_wait_s=10)


class Faults(httpx.BaseTransport):
    """An in-process transport that records requests and breaks the connections it is told to break."""

    def __init__(self, app: Any) -> None:
        self._inner = httpx.WSGITransport(app=app)
        self.sent: list[httpx.Request] = []
        self._breaks: list[tuple[str, httpx.TransportError, int]] = []

    def break_next(self, when: str, error: httpx.TransportError, *, chunks: int = 1) -> None:
        """Break the next request ``before`` it reaches the app, ``after`` the app has handled it, or ``during``
        its answer (after its first ``chunks`` chunks)."""
        self._breaks.append((when, error, chunks))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        when, error, chunks = self._breaks.pop(0) if self._breaks else ("", None, 0)
        if when == "before" and error is not None:
            raise error
        response = self._inner.handle_request(request)
        if when == "after" and error is not None:
            response.close()
            raise error
        if when == "during" and error is not None:
            response.stream = _BreakAfter(response.stream, error, chunks)
        return response


class _BreakAfter(httpx.SyncByteStream):
    def __init__(self, stream: Any, error: httpx.TransportError, chunks: int) -> None:
        self._stream = stream
        self._error = error
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        for sent, chunk in enumerate(self._stream, start=1):
            yield chunk
            if sent == self._chunks:
                raise self._error

    def close(self) -> None:
        self._stream.close()


class AsyncOverThread(httpx.AsyncBaseTransport):
    """An async transport over a sync one: each request, and each chunk of its answer, in a thread."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        plain = httpx.Request(request.method, request.url, headers=request.headers, content=body)
        response = await asyncio.to_thread(self._inner.handle_request, plain)
        return httpx.Response(response.status_code, headers=response.headers, stream=_Chunks(response.stream))


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = iter(self._stream)
        while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
            yield chunk

    async def aclose(self) -> None:
        await asyncio.to_thread(self._stream.close)


class Gateway:
    """The gateway app over fakes, and clients of it."""

    def __init__(self, settings: GatewaySettings | None = None, store: InMemoryTaskStore | None = None) -> None:
        self.store, self.queue, self.clock = store or InMemoryTaskStore(), RecordingQueue(), FixedClock()
        self.registry, self.logs = InMemoryRegistry(["echo", "sleep"]), InMemoryRunLogs()
        self.app = app_over_fakes(
            settings or FAST,
            store=self.store,
            queue=self.queue,
            registry=self.registry,
            clock=self.clock,
            logs=self.logs,
        )
        self.transport = Faults(self.app)
        self.pauses: list[float] = []
        #: Called at each of the client's pauses: how a test moves the world on while the client waits.
        self.on_pause: Callable[[], None] | None = None

    def client(self, token: str | None = "dev-alice", **options: Any) -> tq.Client:
        """A client of the app as ``token``'s principal, its pauses recorded."""
        options.setdefault("retries", TEST_RETRIES)
        return tq.Client("http://gateway", token, transport=self.transport, sleep=self._sleep, **options)

    def async_client(self, token: str | None = "dev-alice", **options: Any) -> tq.AsyncClient:
        """The same as an ``AsyncClient``."""
        options.setdefault("retries", TEST_RETRIES)
        transport = AsyncOverThread(self.transport)
        return tq.AsyncClient("http://gateway", token, transport=transport, sleep=self._async_sleep, **options)

    def run(
        self,
        task_id: str,
        *,
        result: Any = None,
        error: str | None = None,
        log: bytes = b"",
        progress: tuple[float | None, str | None] | None = None,
    ) -> Task:
        """An executor runs the task's next attempt, printing ``log`` and reporting ``progress``: it succeeds with
        ``result``, or fails with ``error``."""
        task = self.store.get(task_id)
        attempt = task.attempts + 1
        task = self._change(task, lambda t: t.claim(attempt, WORKER, self.clock.now(), 30))
        assert task.claim_seq is not None
        if progress is not None:
            self.clock.advance(0.5)
            self.store.report_progress(task.id, task.claim_seq, Progress(*progress, at=self.clock.now()))
        self.logs.put(task.id, task.claim_seq, log)
        kept = RunLog(len(log), 3600)
        if error is None:
            return self._change(task, lambda t: t.succeed(attempt, WORKER, result, self.clock.now(), log=kept))
        failure = ErrorInfo("E", error)
        return self._change(task, lambda t: t.fail(attempt, WORKER, failure, self.clock.now(), jitter=0.0, log=kept))

    def _change(self, task: Task, change: Any) -> Task:
        self.clock.advance(1)
        return mutate(self.store, task, change)

    def _sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        time.sleep(seconds / 100)
        if self.on_pause is not None:
            self.on_pause()

    async def _async_sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await asyncio.sleep(seconds / 100)
        if self.on_pause is not None:
            self.on_pause()


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


class ThrottledPartWay(InMemoryTaskStore):
    """Storage that throttles the first batch after its first task: the gateway answers the others 503."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def create_many(self, new: Sequence[tuple[Task, IdempotencyRecord | None]]) -> list[Exception | None]:
        self.batches += 1
        if self.batches > 1 or len(new) < 2:
            return super().create_many(new)
        return [*super().create_many(new[:1]), *(StoreUnavailable("throttled (fake)") for _ in new[1:])]


@pytest.fixture
def throttled_part_way() -> Gateway:
    """A gateway whose storage throttles the first batch submit after its first task."""
    return Gateway(store=ThrottledPartWay())


@pytest.fixture
def gateway_of() -> type[Gateway]:
    """``gateway_of(settings, store=...)``: a gateway of one's own (test modules cannot import this one)."""
    return Gateway


@pytest.fixture
def client(gateway: Gateway) -> Iterator[tq.Client]:
    with gateway.client() as made:
        yield made
