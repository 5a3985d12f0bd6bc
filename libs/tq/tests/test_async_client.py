"""``tq.AsyncClient`` against the gateway app in-process (run in a thread per request): the same answers as the
sync client, awaited, with listings as async iterators."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest

import tq
from tq.models import CancelledTasks, Redriven
from tq_gateway.settings import GatewaySettings

if TYPE_CHECKING:
    from conftest import Gateway

pytestmark = pytest.mark.unit

T = TypeVar("T")


def run(gateway: Gateway, scenario: Callable[[tq.AsyncClient], Awaitable[T]], token: str = "dev-alice") -> T:
    async def main() -> T:
        async with gateway.async_client(token) as client:
            return await scenario(client)

    # A loop of its own, never set as the thread's (asyncio.run would leave the main thread without one).
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


async def collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]


def test_submit_get_update_cancel(gateway: Gateway) -> None:
    async def scenario(client: tq.AsyncClient) -> list[Any]:
        task = await client.submit("echo", "team-a", {"x": 1}, priority="high")
        read = await client.get(task.id)
        changed = await client.update(task.id, if_match=read.version, priority="low")
        cancelled = await client.cancel(task.id)
        return [task.status, read == task, task.idempotency_key, changed.priority, cancelled.status]

    status, same, key, priority, cancelled = run(gateway, scenario)
    assert (status, same, priority, cancelled) == ("queued", True, "low", "cancelled")
    assert key.startswith("tq-py-")


def test_pause_and_resume(gateway: Gateway) -> None:
    async def scenario(client: tq.AsyncClient) -> list[Any]:
        task = await client.submit("echo", "team-a", schedule={"every_s": 60})
        paused = await client.pause(task.id)
        resumed = await client.resume(task.id)
        return [task.status, paused.status, paused.paused_at is not None, resumed.status, resumed.paused_at]

    # The first run is queued at once: paused, it is withdrawn (the task paused); resumed, the task waits for a slot.
    assert run(gateway, scenario) == ["queued", "paused", True, "scheduled", None]


def test_listings_are_async_iterators_over_every_page(gateway: Gateway) -> None:
    async def scenario(client: tq.AsyncClient) -> tuple[int, int, list[str], list[str]]:
        for n in range(55):
            await client.submit("echo", "team-a", {"n": n})
        listed = await collect(client.list(group="team-a"))
        page = await client.list_page(group="team-a", limit=5)
        done = listed[0].id
        gateway.run(done, result=1, log=b"out\n")
        runs = await collect(client.runs(done))
        events = await collect(client.events(done))
        return len(listed), len(page.items), [r.status for r in runs], [e.type for e in events]

    listed, page, runs, events = run(gateway, scenario)
    assert (listed, page, runs) == (55, 5, ["succeeded"])
    assert events == ["submitted", "queued", "claimed", "succeeded"]


def test_log_wait_dead_letters_and_queues(gateway: Gateway) -> None:
    async def scenario(client: tq.AsyncClient) -> list[Any]:
        task = await client.submit("echo", "team-a", retry={"max_retries": 0})
        gateway.run(task.id, error="boom", log=b"trace\n")
        done = await client.wait(task.id)
        dead = [t.id for t in await collect(client.dlq("team-a"))]
        page = await client.dlq_page("team-a", limit=1)
        dry = await client.redrive_dlq("team-a", dry_run=True, type="echo")
        none = await client.dlq_page("team-a", type="other")
        assert none.items == []
        every = await client.submit("echo", "team-a", schedule={"every_s": 60, "start_at": "2099-01-01T00:00:00Z"})
        assert [t.id for t in await collect(client.schedules(type="echo"))] == [every.id]
        assert [t.id for t in (await client.schedules_page("team-a", limit=1)).items] == [every.id]
        redriven = await client.redrive(task.id)
        queues = await client.queues()
        return [done.status, await client.log(task.id, "1.1"), dead == [task.id], len(page.items), dry,
                redriven.status, sum(q.depth for q in queues)]  # fmt: skip

    status, log, listed, page, dry, redriven, depth = run(gateway, scenario)
    assert (status, log, listed, page, redriven, depth) == ("failed", "trace\n", True, 1, "queued", 2)
    assert dry == Redriven(count=1, ids=["t-1"], dry_run=True)


def test_tasks_are_cancelled_in_bulk(gateway: Gateway) -> None:
    async def scenario(client: tq.AsyncClient) -> tuple[CancelledTasks, CancelledTasks, str]:
        task = await client.submit("echo", "team-a", {"x": 1})
        dry = await client.cancel_many("team-a", type="echo", dry_run=True)
        done = await client.cancel_many("team-a", ids=[task.id], status="queued")
        return dry, done, (await client.get(task.id)).status

    dry, done, status = run(gateway, scenario)
    assert dry == CancelledTasks(count=1, ids=["t-1"], dry_run=True)
    assert done == CancelledTasks(count=1, ids=["t-1"], dry_run=False)
    assert status == "cancelled"


def test_errors_raise_api_error(gateway: Gateway) -> None:
    async def scenario(client: tq.AsyncClient) -> tuple[int | None, str]:
        try:
            await client.get("t-404")
        except tq.ApiError as error:
            return error.status, error.problem["type"]
        raise AssertionError("no error")

    assert run(gateway, scenario) == (404, "urn:tq:problem:not-found")


def test_a_429_is_retried_after_its_retry_after(gateway_of: type[Gateway]) -> None:
    # One request a second: the second request, made at once, is refused whatever the machine's load; the client's
    # pause (recorded, slept a hundredth of) is then made a whole real second, the bucket's refill.
    limited = gateway_of(GatewaySettings(rate_limit_rps=1, rate_limit_burst=1))
    limited.on_pause = lambda: time.sleep(0.99)

    async def scenario(client: tq.AsyncClient) -> str:
        task = await client.submit("echo", "team-a")
        return (await client.get(task.id)).status

    assert run(limited, scenario) == "queued"
    assert limited.pauses == [1.0]


def test_a_submit_whose_answer_was_lost_runs_once(gateway: Gateway) -> None:
    gateway.transport.break_next("after", httpx.ReadError("connection reset"))

    async def scenario(client: tq.AsyncClient) -> str:
        return (await client.submit("echo", "team-a")).id

    task_id = run(gateway, scenario)
    assert [t.id for t in gateway.client().list()] == [task_id]
    assert len(gateway.queue.sent) == 1


def test_submit_many_and_stream(gateway: Gateway) -> None:
    async def scenario(client: tq.AsyncClient) -> tuple[list[int], list[str]]:
        items = await client.submit_many(
            [{"type": "echo", "group": "team-a", "payload": {"n": n}} for n in range(3)] + [{"type": "nope"}]
        )
        first = items[0].task
        assert first is not None
        threading.Timer(0.1, gateway.run, (first.id,), {"progress": (None, "started")}).start()
        return [item.status for item in items], [event.type async for event in client.stream(first.id)]

    statuses, kinds = run(gateway, scenario)
    assert statuses == [201, 201, 201, 422]
    assert kinds == ["submitted", "queued", "claimed", "progress", "succeeded"]


def test_submit_many_sends_again_the_items_a_partial_write_answered_503(throttled_part_way: Gateway) -> None:
    gateway = throttled_part_way

    async def scenario(client: tq.AsyncClient) -> list[int]:
        items = await client.submit_many([{"type": "echo", "group": "team-a", "payload": {"n": n}} for n in range(3)])
        return [item.status for item in items]

    assert run(gateway, scenario) == [201, 201, 201]
    assert len(gateway.queue.sent) == 3


def test_wait_returns_once_the_task_has_ended(gateway: Gateway) -> None:
    async def scenario(client: tq.AsyncClient) -> tuple[str, Any]:
        task = await client.submit("echo", "team-a")
        threading.Timer(0.05, gateway.run, (task.id,), {"result": {"x": 1}}).start()
        done = await client.wait(task.id, timeout_s=5)
        return done.status, done.result

    assert run(gateway, scenario) == ("succeeded", {"x": 1})
