"""Benchmark the background's cost: an idle stack's AWS calls, and the scheduler's and reaper's passes under a backlog.

1. idle: ministack and a whole stack (gateway + scheduler + reaper + one executor, as ``make run``), nothing
   submitted: AWS calls per minute by service and operation (the services' ``tq_aws_calls_total``), and the
   emulator's CPU per minute.
2. backlog: a fresh table holding ``--backlog`` tasks queued and never claimed (their re-send deadlines ahead)
   and as many waiting a day ahead; then reaper passes (lease reclaim + re-send) and scheduler passes (due walk
   and sweep), in this process, against ministack: the emulator's CPU, wall time and DynamoDB calls per pass.
   A bounded pass costs the same with or without the backlog (``--backlog 0`` for the reference).

Usage: .venv/bin/python bench/background_cost.py [--idle-s 60] [--backlog 2000] [--passes 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from throughput import aws_calls  # bench/ is the script's directory

from tq_scheduler.scheduler import Scheduler
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.bootstrap import bootstrap
from tqcore.clock import SystemClock, new_task_id
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.settings import CoreSettings
from tqcore.testing import InMemoryRegistry, RecordingQueue
from tqcore.usecases.recovery import reclaim_expired_leases, resend_stuck
from tqcore.usecases.service import Catalog, Tasks
from tqdev.emulator import start_emulator
from tqdev.stack import Stack, StackConfig, unique_prefix

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pgid: int) -> float:
    """CPU seconds used so far by every process of a process group (the emulator and its children)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # field 5 of stat: the process group
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def idle(seconds: float) -> None:
    """Print an idle stack's AWS calls and emulator CPU per minute."""
    run_dir = Path(tempfile.mkdtemp(prefix="tq-bench-idle-"))
    emulator, endpoint = start_emulator("ministack", run_dir)
    try:
        stack = Stack(StackConfig(endpoint_url=endpoint, prefix=unique_prefix(), run_dir=run_dir, executors=1))
        try:
            stack.start()
            time.sleep(15)  # past the start-up calls (bootstrap, registration, first passes)
            before, cpu_before = aws_calls(stack), cpu_s(emulator.pid)
            time.sleep(seconds)
            after, cpu_after = aws_calls(stack), cpu_s(emulator.pid)
        finally:
            stack.stop()
    finally:
        emulator.stop()
    per_min = {k: round((after[k] - before[k]) * 60 / seconds, 1) for k in sorted(after) if after[k] - before[k]}
    print(
        f"idle stack ({seconds:g} s): {round(sum(per_min.values()))} AWS calls/min, emulator CPU "
        f"{1000 * (cpu_after - cpu_before) * 60 / seconds:.0f} ms/min"
    )
    for service in sorted({k.split(":")[0] for k in per_min}):
        mine = {k.split(":")[1]: v for k, v in per_min.items() if k.startswith(f"{service}:")}
        print(f"  {service}: {round(sum(mine.values()))}/min {mine}")


def backlog(count: int, passes: int) -> None:
    """Print the emulator CPU, wall time and DynamoDB calls of reaper and scheduler passes over a backlog."""
    run_dir = Path(tempfile.mkdtemp(prefix="tq-bench-backlog-"))
    emulator, endpoint = start_emulator("ministack", run_dir)
    try:
        # Re-send deadlines well ahead (a backlog waiting for executors, not one the reaper must re-send).
        settings = CoreSettings(endpoint_url=endpoint, prefix="bgbench", resend_after_s=600)
        bootstrap(settings)
        client = aws.client(settings, "dynamodb")
        calls = Counter[str]()
        client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.update([model.name]))
        store = DynamoTaskStore(client, settings)
        clock = SystemClock()
        queue = RecordingQueue()  # nothing is ever delivered: the queued tasks stay queued
        tasks = Tasks(store, queue, Catalog(InMemoryRegistry(["echo"])), clock, new_task_id)
        at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        who = Principal("bench", frozenset({"g"}))
        for _ in range(count):
            tasks.submit(SubmitTask.model_validate({"type": "echo", "group": "g"}), who)
            tasks.submit(SubmitTask.model_validate({"type": "echo", "group": "g", "schedule": {"at": at}}), who)
        print(f"backlog: {count} queued (unclaimed, re-send deadlines 10 min ahead) + {count} waiting a day ahead")
        registry = InMemoryRegistry(["echo"])

        def reaper_pass() -> None:
            reclaim_expired_leases(store, queue, clock, **reap_args(settings))
            resend_stuck(store, queue, clock, **reap_args(settings))

        def scheduler_pass() -> None:
            scheduler = Scheduler(store, queue, registry, clock, **scheduler_args(settings))
            try:
                scheduler.run_once()  # a scheduler's first pass also sweeps
            finally:
                scheduler.close()

        for name, one_pass in (("reaper pass", reaper_pass), ("scheduler pass (walk + sweep)", scheduler_pass)):
            for _ in range(passes):
                measure(name, one_pass, emulator.pid, calls)
    finally:
        emulator.stop()


def measure(name: str, one_pass: Callable[[], None], pgid: int, calls: Counter[str]) -> None:
    calls.clear()
    cpu_before, started = cpu_s(pgid), time.perf_counter()
    one_pass()
    took_ms, cpu_ms = 1000 * (time.perf_counter() - started), 1000 * (cpu_s(pgid) - cpu_before)
    print(f"  {name}: emulator CPU {cpu_ms:.0f} ms, wall {took_ms:.0f} ms, DynamoDB calls {dict(calls)}")


def reap_args(settings: CoreSettings) -> dict[str, Any]:
    """The reaper use cases' keyword arguments (none since the port speaks in deadlines, not shards)."""
    return {}


def scheduler_args(settings: CoreSettings) -> dict[str, Any]:
    return {"catchup_s": 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle-s", type=float, default=60, help="0 skips the idle phase")
    parser.add_argument("--backlog", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=3, help="0 skips the backlog phase")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; emulator: ministack")
    if args.passes:
        backlog(args.backlog, args.passes)
    if args.idle_s:
        idle(args.idle_s)


if __name__ == "__main__":
    main()
