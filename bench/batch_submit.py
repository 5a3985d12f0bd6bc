"""Benchmark batch submit against single submits on a local stack: tasks accepted per second and AWS calls per task.

Starts ministack and a whole stack (gateway + executors + scheduler + reaper) as `make run` does, then submits N
echo tasks twice: as N single ``POST /v1/tasks`` from C concurrent clients, then as ``POST /v1/tasks:batch`` of
500 (B of them in flight at once). For each: tasks accepted per second (the submit window), AWS calls per task on
the submit side (the gateway's calls in that window) and end to end (every service's, until every task ran), the
idle background subtracted (counted by the services' botocore hook, ``tq_aws_calls_total``).

Usage: .venv/bin/python bench/batch_submit.py [--tasks 5000] [--clients 16] [--batch-clients 1] [--keyed]
                                              [--executors 2]
(--keyed: every task carries its own idempotency key, as ``tq.Client`` sends them.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from throughput import HEADERS, aws_calls, executed, idle_rate, wait_executed  # bench/ is the script's directory

from tqdev.emulator import start_emulator
from tqdev.stack import HIGH_RATE_LIMIT, Stack, StackConfig, unique_prefix

#: Tasks per batch request (the most one takes).
BATCH = 500


def body(n: int, keyed: bool) -> dict[str, Any]:
    task: dict[str, Any] = {"type": "echo", "group": "team-a", "payload": {"n": n}}
    if keyed:
        task["idempotency_key"] = uuid.uuid4().hex
    return task


def single(client: httpx.Client, bodies: list[dict[str, Any]], clients: int) -> None:
    def one(task: dict[str, Any]) -> None:
        client.post("/v1/tasks", json=task).raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, bodies))


def batched(client: httpx.Client, bodies: list[dict[str, Any]], clients: int) -> None:
    def one(chunk: list[dict[str, Any]]) -> None:
        response = client.post("/v1/tasks:batch", json={"tasks": chunk}, timeout=120)
        response.raise_for_status()
        refused = [item for item in response.json()["items"] if item["status"] != 201]
        assert not refused, refused[:3]

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, [bodies[n : n + BATCH] for n in range(0, len(bodies), BATCH)]))


def measure(stack: Stack, send: Callable[[list[dict[str, Any]]], None], bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """Submit ``bodies`` with ``send``; throughput and AWS calls per task, submit side and end to end."""
    count = len(bodies)
    base = executed(stack)
    idle = idle_rate(stack)
    before = aws_calls(stack)
    t0 = time.monotonic()
    send(bodies)
    submitted = time.monotonic()
    submit_side = aws_calls(stack)
    done = wait_executed(stack, base + count, 600)
    after = aws_calls(stack)

    def per_task(upto: Counter[str], window: float, service: str = "") -> float:
        calls = sum(upto[k] - before[k] - idle.get(k, 0) * window for k in upto if k.startswith(service))
        return round(calls / count, 2)

    gateway = {
        k: round((submit_side[k] - before[k]) / count, 3)
        for k in sorted(submit_side)
        if k.startswith("gateway:") and submit_side[k] > before[k]
    }
    return {
        "accepted_per_s": round(count / (submitted - t0), 1),
        "completed_per_s": round(count / (done - t0), 1),
        "submit_side_calls_per_task": per_task(submit_side, submitted - t0, "gateway:"),
        "end_to_end_calls_per_task": per_task(after, done - t0),
        "gateway_calls_per_task": gateway,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16, help="concurrent single submits")
    parser.add_argument("--batch-clients", type=int, default=1, help="concurrent batch requests")
    parser.add_argument("--keyed", action="store_true", help="an idempotency key on every task")
    parser.add_argument("--executors", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    run_dir = Path(tempfile.mkdtemp(prefix="tq-bench-batch-"))
    with contextlib.ExitStack() as resources:
        emulator, endpoint = start_emulator("ministack", run_dir)
        resources.callback(emulator.stop)
        env = {"TQ_DEMO_EXECUTION_LOG": str(run_dir / "executions.log"), **HIGH_RATE_LIMIT}
        config = StackConfig(
            endpoint_url=endpoint, prefix=unique_prefix(), run_dir=run_dir, executors=args.executors, env=env
        )
        stack = Stack(config)
        resources.callback(stack.stop)
        stack.start()
        with httpx.Client(base_url=stack.url, headers=HEADERS, timeout=30) as client:
            single(client, [body(n, args.keyed) for n in range(20)], 4)  # warm up connections and caches
            batched(client, [body(n, args.keyed) for n in range(20)], 1)
            wait_executed(stack, 40, 30)
            print(
                f"machine: {os.cpu_count()} cores; emulator: ministack; executors: {args.executors}; "
                f"{args.tasks} echo tasks; idempotency keys: {'yes' if args.keyed else 'no'}"
            )
            bodies = [body(n, args.keyed) for n in range(args.tasks)]
            figures = measure(stack, lambda b: single(client, b, args.clients), bodies)
            print(f"single submits ({args.clients} clients):", figures)
            bodies = [body(n, args.keyed) for n in range(args.tasks)]
            figures = measure(stack, lambda b: batched(client, b, args.batch_clients), bodies)
            print(f"batches of {BATCH} ({args.batch_clients} in flight):", figures)


if __name__ == "__main__":
    main()
