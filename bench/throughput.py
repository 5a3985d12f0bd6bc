"""Benchmark the local stack: submit latency, sustained throughput, submit->start, AWS calls per task.

Starts ministack and a whole stack (gateway + executors + scheduler + reaper) as `make run` does, then:
  1. paced phase: N echo tasks at a fixed rate (default 50/s): submit p50/p99, submit->start p50/p99, and
     AWS API calls per task (counted by the services' botocore hook, idle background subtracted);
  2. saturation phase: M echo tasks from C concurrent clients: sustained tasks/s, submit->start p50/p99;
  3. with --long L: L `sleep` tasks of --long-s seconds at once, and the executors' heartbeat calls per task
     (lease extensions, visibility renewals) while they run.

Usage: .venv/bin/python bench/throughput.py [--rate 50] [--paced 500] [--burst 2000] [--clients 16] [--executors 2]
                                          [--long 0] [--long-s 35] [--traces]
(--paced 0 or --burst 0 skips that phase.)
With --traces every service exports its spans over OTLP/HTTP to a receiver in this process (tqdev.otlp), as
``TQ_TRACES_EXPORTER=otlp`` would to a collector, and the spans received are counted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx

from tqdev.emulator import start_emulator
from tqdev.metrics import scrape
from tqdev.otlp import OtlpReceiver
from tqdev.stack import HIGH_RATE_LIMIT, Stack, StackConfig, unique_prefix

HEADERS = {"Authorization": "Bearer dev-alice"}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def aws_calls(stack: Stack) -> Counter[str]:
    """tq_aws_calls_total summed over every running process of every service, by service and operation."""
    total: Counter[str] = Counter()
    for service, url in stack.metrics_urls().values():
        for (name, labels), count in scrape(url).items():
            if name == "tq_aws_calls_total":
                total[f"{service}:{dict(labels)['operation']}"] += int(count)
    return total


def executed(stack: Stack) -> int:
    path = stack.config.run_dir / "executions.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_executed(stack: Stack, count: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while executed(stack) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {executed(stack)} of {count} tasks executed")
        time.sleep(0.05)
    return time.monotonic()


def submit(client: httpx.Client, n: int, sleep_s: float | None = None) -> tuple[str, float]:
    body = {"type": "echo", "group": "team-a", "payload": {"n": n}}
    if sleep_s is not None:
        body = {"type": "sleep", "group": "team-a", "payload": {"seconds": sleep_s}}
    start = time.perf_counter()
    response = client.post("/v1/tasks", json=body)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return response.json()["id"], elapsed


def start_delays(client: httpx.Client, ids: list[str]) -> list[float]:
    def one(task_id: str) -> float:
        task = client.get(f"/v1/tasks/{task_id}").json()
        started = datetime.fromisoformat(task["started_at"].replace("Z", "+00:00"))
        created = datetime.fromisoformat(task["created_at"].replace("Z", "+00:00"))
        return (started - created).total_seconds()

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, ids))


def paced(stack: Stack, client: httpx.Client, rate: float, count: int) -> dict[str, object]:
    base = executed(stack)
    idle = idle_rate(stack)
    before = aws_calls(stack)
    latencies: list[float] = []
    ids: list[str] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def fire(n: int) -> None:
        task_id, elapsed = submit(client, n)
        with lock:
            latencies.append(elapsed)
            ids.append(task_id)

    with ThreadPoolExecutor(32) as pool:
        for n in range(count):
            delay = t0 + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(fire, n)
    done_at = wait_executed(stack, base + count, 120)
    after = aws_calls(stack)
    window = done_at - t0
    by_op = {k: after[k] - before[k] - idle.get(k, 0) * window for k in after}
    per_task = {k: round(v / count, 2) for k, v in sorted(by_op.items()) if v / count >= 0.005}
    delays = start_delays(client, ids)
    return {
        "submit_p50_ms": round(1000 * pct(latencies, 0.50), 1),
        "submit_p99_ms": round(1000 * pct(latencies, 0.99), 1),
        "start_p50_ms": round(1000 * pct(delays, 0.50), 1),
        "start_p99_ms": round(1000 * pct(delays, 0.99), 1),
        "aws_calls_per_task": round(sum(by_op.values()) / count, 2),
        "aws_calls_by_operation": per_task,
        "idle_background_calls_per_s": round(sum(idle.values()), 1),
    }


def idle_rate(stack: Stack, seconds: float = 5) -> dict[str, float]:
    """AWS calls per second by operation while nothing runs (the background to subtract)."""
    before = aws_calls(stack)
    time.sleep(seconds)
    return {k: (v - before[k]) / seconds for k, v in aws_calls(stack).items()}


#: What keeps a running attempt alive: lease extensions and visibility renewals (none is made while idle).
HEARTBEAT_CALLS = ("executor:UpdateItem", "executor:ChangeMessageVisibility", "executor:ChangeMessageVisibilityBatch")


def long_tasks(stack: Stack, client: httpx.Client, count: int, seconds: float) -> dict[str, object]:
    """``count`` sleep tasks of ``seconds`` at once: the executors' heartbeat calls per task while they run."""
    before = aws_calls(stack)
    t0 = time.monotonic()
    ids = [submit(client, n, sleep_s=seconds)[0] for n in range(count)]
    deadline = t0 + 4 * seconds + 60
    while any(client.get(f"/v1/tasks/{task_id}").json()["status"] != "succeeded" for task_id in ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} sleep tasks of {seconds} s not all succeeded")
        time.sleep(1)
    after = aws_calls(stack)
    by_op = {k: (after[k] - before[k]) / count for k in HEARTBEAT_CALLS}
    return {
        "heartbeat_calls_per_task": round(sum(by_op.values()), 2),
        "by_operation": {k: round(v, 2) for k, v in by_op.items() if v},
    }


def burst(stack: Stack, client: httpx.Client, count: int, clients: int) -> dict[str, object]:
    base = executed(stack)
    t0 = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda n: submit(client, n), range(count)))
    submitted_at = time.monotonic()
    done_at = wait_executed(stack, base + count, 300)
    delays = start_delays(client, [task_id for task_id, _ in results])
    return {
        "submitted_per_s": round(count / (submitted_at - t0), 1),
        "completed_per_s": round(count / (done_at - t0), 1),
        "submit_p50_ms": round(1000 * statistics.median(e for _, e in results), 1),
        "start_p50_ms": round(1000 * pct(delays, 0.50), 1),
        "start_p99_ms": round(1000 * pct(delays, 0.99), 1),
    }


def local_stack(resources: contextlib.ExitStack, run_dir: Path, executors: int, env: dict[str, str]) -> Stack:
    """ministack and a whole stack on it, started as `make run` does; both stopped when ``resources`` closes."""
    emulator, endpoint = start_emulator("ministack", run_dir)
    resources.callback(emulator.stop)
    config = StackConfig(endpoint_url=endpoint, prefix=unique_prefix(), run_dir=run_dir, executors=executors, env=env)
    stack = Stack(config)
    resources.callback(stack.stop)
    stack.start()
    return stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--paced", type=int, default=500)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--long", type=int, default=0, help="sleep tasks for the heartbeat-cost phase")
    parser.add_argument("--long-s", type=float, default=35, help="how long each of those sleeps")
    parser.add_argument("--traces", action="store_true", help="export every span over OTLP/HTTP")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    run_dir = Path(tempfile.mkdtemp(prefix="tq-bench-"))
    with contextlib.ExitStack() as resources:
        env = {"TQ_DEMO_EXECUTION_LOG": str(run_dir / "executions.log"), **HIGH_RATE_LIMIT}
        receiver = None
        if args.traces:
            receiver = resources.enter_context(OtlpReceiver())
            env |= {"TQ_TRACES_EXPORTER": "otlp", "TQ_OTLP_ENDPOINT": receiver.url}
        stack = local_stack(resources, run_dir, args.executors, env)
        with httpx.Client(base_url=stack.url, headers=HEADERS, timeout=30) as client:
            for n in range(20):  # warm up connections and caches
                submit(client, n)
            wait_executed(stack, 20, 30)
            traces = "OTLP to a local receiver" if args.traces else "none"
            print(
                f"machine: {os.cpu_count()} cores; emulator: ministack; executors: {args.executors}; traces: {traces}"
            )
            if args.paced:
                print(f"paced ({args.paced} tasks at {args.rate:g}/s):", paced(stack, client, args.rate, args.paced))
            if args.burst:
                burst_figures = burst(stack, client, args.burst, args.clients)
                print(f"burst ({args.burst} tasks, {args.clients} clients):", burst_figures)
            if args.long:
                long_figures = long_tasks(stack, client, args.long, args.long_s)
                print(f"long ({args.long} tasks of {args.long_s:g} s):", long_figures)
        if receiver is not None:
            time.sleep(7)  # the batch span processors export every 5 s
            print(f"spans received: {len(receiver.spans())}")


if __name__ == "__main__":
    main()
