"""Benchmark the peak of seed 001: hundreds of tasks due at the same instant, two scheduler replicas.

Starts ministack and a whole stack (gateway, 2 schedulers, executors, reaper), submits N echo tasks all
scheduled for one instant T (far enough ahead that every submit lands first), then measures for each task
how long after T it started (an executor's claim: ``started_at``), checks from
the handlers' own execution log that every task ran exactly once, and counts the AWS calls the peak cost.

Usage: .venv/bin/python bench/schedule_peak.py [--tasks 750] [--schedulers 2] [--executors 2] [--threads 8]
       [--prefetch 10] [--lead-s 30]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from throughput import HEADERS, aws_calls, pct, wait_executed

from tqdev.emulator import start_emulator
from tqdev.procs import Proc
from tqdev.stack import HIGH_RATE_LIMIT, Stack, StackConfig, unique_prefix


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def cpu_s_by_group(procs: list[Proc]) -> Counter[str]:
    """CPU seconds (user + system) used so far by each process group, by its leader's name."""
    names = {proc.pid: proc.name.rstrip("-0123456789") for proc in procs}
    used: Counter[str] = Counter()
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        group = int(fields[2])  # pgrp: every process tq starts leads its own group
        if group in names:
            used[names[group]] += (int(fields[11]) + int(fields[12])) / tick
    return used


def run(stack: Stack, emulator: Proc, client: httpx.Client, count: int, lead_s: float) -> dict[str, object]:
    at = (datetime.now(UTC) + timedelta(seconds=lead_s)).replace(microsecond=0)
    body = {"type": "echo", "group": "team-a", "schedule": {"at": at.isoformat()}}
    with ThreadPoolExecutor(16) as pool:
        ids = list(
            pool.map(lambda n: client.post("/v1/tasks", json={**body, "payload": {"n": n}}).json()["id"], range(count))
        )
    submitted = datetime.now(UTC)
    if submitted >= at:
        raise SystemExit(f"submitting took longer than the lead ({lead_s} s): raise --lead-s")
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds() - 1))
    before, cpu_before = aws_calls(stack), cpu_s_by_group([*stack.procs, emulator])
    wait_executed(stack, 20 + count, 120)
    after, cpu_after = aws_calls(stack), cpu_s_by_group([*stack.procs, emulator])

    with ThreadPoolExecutor(8) as pool:
        tasks = list(pool.map(lambda task_id: client.get(f"/v1/tasks/{task_id}").json(), ids))
    started = [(ts(t["started_at"]) - at).total_seconds() for t in tasks]
    log = (stack.config.run_dir / "executions.log").read_text().split("\n")
    ran = Counter(line.split()[0] for line in log if line.strip())
    by_service = Counter[str]()
    for key, value in after.items():
        by_service[key.split(":")[0].rstrip("-0123456789")] += value - before[key]
    return {
        "tasks": count,
        "due_at": at.isoformat(),
        "submit_lead_s": round((at - submitted).total_seconds(), 1),
        "all_succeeded": all(t["status"] == "succeeded" for t in tasks),
        "ran_exactly_once": all(ran[task_id] == 1 for task_id in ids),
        "ran_early": sum(1 for s in started if s < 0),
        "first_started_after_s": round(min(started), 3),
        "started_after_s": {
            "p50": round(pct(started, 0.5), 3),
            "p99": round(pct(started, 0.99), 3),
            "max": round(max(started), 3),
        },
        "within_5_s": sum(1 for s in started if 0 <= s <= 5),
        "aws_calls_per_task_by_service": {k: round(v / count, 2) for k, v in sorted(by_service.items()) if v},
        "cpu_s_during_peak": {k: round(cpu_after[k] - cpu_before[k], 1) for k in sorted(cpu_after)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=750)
    parser.add_argument("--schedulers", type=int, default=2)
    parser.add_argument("--executors", type=int, default=2)
    parser.add_argument("--lead-s", type=float, default=30)
    parser.add_argument("--threads", type=int, default=8, help="worker threads per executor (TQ_THREADS)")
    parser.add_argument(
        "--prefetch",
        type=int,
        default=10,
        help="messages held per queue (TQ_PREFETCH; 10 suits a burst of short tasks, the default 8 long ones)",
    )
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    run_dir = Path(tempfile.mkdtemp(prefix="tq-bench-peak-"))
    emulator, endpoint = start_emulator("ministack", run_dir)
    stack = Stack(
        StackConfig(
            endpoint_url=endpoint,
            prefix=unique_prefix(),
            run_dir=run_dir,
            executors=args.executors,
            schedulers=args.schedulers,
            env={
                "TQ_DEMO_EXECUTION_LOG": str(run_dir / "executions.log"),
                **HIGH_RATE_LIMIT,
                "TQ_THREADS": str(args.threads),
                "TQ_PREFETCH": str(args.prefetch),
            },
        )
    )
    try:
        stack.start()
        with httpx.Client(base_url=stack.url, headers=HEADERS, timeout=30) as client:
            for n in range(20):  # warm up connections and caches
                client.post("/v1/tasks", json={"type": "echo", "group": "team-a", "payload": {"n": n}})
            wait_executed(stack, 20, 30)
            print(
                f"machine: {os.cpu_count()} cores; emulator: ministack; "
                f"schedulers: {args.schedulers}; executors: {args.executors} x {args.threads} threads, "
                f"prefetch {args.prefetch}"
            )
            print(json.dumps(run(stack, emulator, client, args.tasks, args.lead_s), indent=2))
    finally:
        stack.stop()
        emulator.stop()


if __name__ == "__main__":
    main()
