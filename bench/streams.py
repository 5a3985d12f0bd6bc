"""Benchmark how many concurrent SSE streams one gateway replica (one gunicorn worker, as ``make run`` has) holds.

Starts ministack and a local stack (gunicorn gateway, scheduler, reaper, no executors) with ``--slots`` wait slots,
stores idle tasks (a repeating task whose first run is an hour ahead: nothing acts on them), then opens streams
(one per task) in steps. At each step, with every stream open: the latency of ordinary requests
(``GET /v1/tasks/{id}`` and ``/healthz``, p50 and p99 of ``--probes`` each, one at a time), the gateway worker's
RSS and CPU, the watch's AWS calls per second (``BatchGetItem`` in ``tq_aws_calls_total``), and how long a change
takes to reach its stream (one task cancelled: ms until its stream gets ``cancelled``). Past the slots, it checks
that the next stream is a 503 with ``Retry-After``.

Usage: .venv/bin/python bench/streams.py [--slots 256] [--steps 0,100,200,256] [--probes 40] [--settle-s 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tqdev.memory import gunicorn_workers
from tqdev.metrics import scrape, value
from tqdev.stack import Stack, benchmark_stack

ALICE = {"Authorization": "Bearer dev-alice"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def submit_idle(api: httpx.Client, count: int) -> list[str]:
    """``count`` repeating tasks whose first run is an hour ahead."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
    ids = []
    for n in range(count):
        answer = api.post(
            "/v1/tasks",
            json={
                "type": "echo",
                "group": "team-a",
                "payload": {"n": n},
                "schedule": {"every_s": 3600, "start_at": start},
            },
        )
        answer.raise_for_status()
        ids.append(answer.json()["id"])
    return ids


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


async def timed(call: Callable[[], Awaitable[httpx.Response]], probes: int) -> dict[str, float]:
    """p50 and p99 (ms) of ``probes`` calls one after another (each must answer 200)."""
    took = []
    for _ in range(probes):
        started = time.perf_counter()
        answer = await call()
        assert answer.status_code == 200, answer.text
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return {"p50_ms": round(statistics.median(took), 1), "p99_ms": round(took[int(0.99 * (len(took) - 1))], 1)}


class Streams:
    """Open streams, each read to its end in the background."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client
        self.tasks: dict[str, asyncio.Task[list[str]]] = {}
        self.open_ids: list[str] = []

    async def open(self, task_id: str) -> int:
        """Open a stream and wait for its headers; its status (200, or 503 once the replica is full)."""
        headers: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def read() -> list[str]:
            async with self._client.stream("GET", f"/v1/tasks/{task_id}/stream") as answer:
                headers.set_result(answer.status_code)
                if answer.status_code != 200:
                    return [json.dumps(dict(answer.headers))]
                return [line async for line in answer.aiter_lines()]

        self.tasks[task_id] = asyncio.create_task(read())
        status = await headers
        if status == 200:
            self.open_ids.append(task_id)
        return status


async def change_latency_ms(api: httpx.AsyncClient, streams: Streams) -> float:
    """Cancel the task of the newest stream: ms until its stream has the ``cancelled`` event (and ends)."""
    task_id = streams.open_ids.pop()
    started = time.perf_counter()
    (await api.delete(f"/v1/tasks/{task_id}")).raise_for_status()
    lines = await asyncio.wait_for(streams.tasks[task_id], 30)
    assert "event: cancelled" in lines, lines[-6:]
    return round((time.perf_counter() - started) * 1000, 1)


async def measure(stack: Stack, ids: list[str], steps: list[int], args: argparse.Namespace) -> list[dict[str, Any]]:
    (worker,) = gunicorn_workers(stack.procs[0].pid)
    limits = httpx.Limits(max_connections=max(steps) + 100, max_keepalive_connections=20)
    rows = []
    async with (
        httpx.AsyncClient(base_url=stack.url, headers=ALICE, timeout=60, limits=limits) as streaming,
        httpx.AsyncClient(base_url=stack.url, headers=ALICE, timeout=30) as api,
    ):
        streams = Streams(streaming)
        fresh = iter(ids)
        for step in steps:
            while len(streams.open_ids) < step:
                task_id = next(fresh)
                status = await streams.open(task_id)
                assert status == 200, (status, await streams.tasks[task_id])
            row = {**(await _step(stack, worker, api, ids[0], args)), "streams": len(streams.open_ids)}
            if step:  # a change reaches its stream; its slot then goes to a new stream (once the old one closed)
                row["change_to_stream_ms"] = await change_latency_ms(api, streams)
                await asyncio.sleep(0.2)
                assert await streams.open(next(fresh)) == 200
            rows.append(row)
            print(json.dumps(row), flush=True)
        refused = next(fresh)
        status = await streams.open(refused)
        rows.append(
            {"one_more_stream": status, "answer_headers": await streams.tasks[refused] if status != 200 else []}
        )
        print(json.dumps(rows[-1]), flush=True)
        for task in streams.tasks.values():
            task.cancel()
        await asyncio.gather(*streams.tasks.values(), return_exceptions=True)
    return rows


async def _step(
    stack: Stack, worker: int, api: httpx.AsyncClient, task_id: str, args: argparse.Namespace
) -> dict[str, Any]:
    """What one step measures with its streams open."""

    def batch_gets() -> float:
        return value(scrape(f"{stack.url}/metrics"), "tq_aws_calls_total", operation="BatchGetItem")

    await asyncio.sleep(args.settle_s / 2)
    calls, cpu, at = batch_gets(), cpu_s(worker), time.monotonic()
    await asyncio.sleep(args.settle_s)
    elapsed = time.monotonic() - at
    calls, cpu = batch_gets() - calls, cpu_s(worker) - cpu
    return {
        "get_task": await timed(lambda: api.get(f"/v1/tasks/{task_id}"), args.probes),
        "healthz": await timed(lambda: api.get("/healthz"), args.probes),
        "watch_batch_gets_per_s": round(calls / elapsed, 2),
        "worker_cpu_percent_idle_streams": round(100 * cpu / elapsed, 1),
        "worker_rss_mib": round(rss_mib(worker), 1),
        "worker_threads": threads(worker),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slots", type=int, default=256, help="TQ_GATEWAY_STREAMS of the gateway")
    parser.add_argument("--steps", default="0,50,100,200,256", help="streams open at each measurement")
    parser.add_argument("--probes", type=int, default=40, help="ordinary requests timed per step")
    parser.add_argument("--settle-s", type=float, default=5, help="seconds over which calls and CPU are averaged")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    # Every stream is alice's: her share is the whole worker here (the bench measures capacity, not fairness).
    slots = str(args.slots)
    os.environ.update(
        {"TQ_GATEWAY_STREAMS": slots, "TQ_GATEWAY_STREAMS_PER_PRINCIPAL": slots, "TQ_GATEWAY_WORKERS": "1"}
    )
    with benchmark_stack("streams") as stack:
        with httpx.Client(base_url=stack.url, headers=ALICE, timeout=30) as api:
            ids = submit_idle(api, max(steps) + len(steps) + 2)
        print(f"machine: {os.cpu_count()} cores; emulator: ministack; 1 gateway worker, {args.slots} wait slots")
        asyncio.run(measure(stack, ids, steps, args))


if __name__ == "__main__":
    main()
