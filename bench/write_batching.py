"""What the group commit of the task store's writes saves: calls, emulator CPU and wall time per commit.

Starts its own ministack, then for each setting (batching off: every write its own call; on: the defaults)
creates N tasks and claims each from T threads of one process through ``DynamoTaskStore`` (two commits per
task), counting the write calls (botocore hook) and the emulator process's CPU time (``/proc``).

Usage: .venv/bin/python bench/write_batching.py [--tasks 1000] [--threads 16] [--rounds 2]
Rounds alternate off/on so that a shared machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.bootstrap import bootstrap
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings
from tqdev.emulator import start_emulator
from tqdev.stack import unique_prefix

WRITES = ("TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process and its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def one_run(
    endpoint: str, emulator_pid: int, tasks: int, threads: int, inflight: int, linger_ms: float
) -> dict[str, float]:
    settings = CoreSettings(
        endpoint_url=endpoint, prefix=unique_prefix(), write_max_inflight=inflight, write_linger_ms=linger_ms
    )
    bootstrap(settings)
    client = aws.client(settings, "dynamodb")
    calls: Counter[str] = Counter()
    lock = threading.Lock()

    def count(model: Any, **_: Any) -> None:
        with lock:
            calls[model.name] += 1

    client.meta.events.register("before-call.dynamodb.*", count)
    store = DynamoTaskStore(client, settings)  # concurrent writes share calls through its batcher
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a"})
    now = datetime.now(UTC)
    made = [
        Task.submit(task_id=new_task_id(), owner="bench", now=now, submitted={}, **cmd.task_fields())
        for _ in range(tasks)
    ]

    def lifecycle(task: Task) -> None:
        store.create(task)
        task = task.committed()
        task.claim(1, "bench:1", datetime.now(UTC), 30)
        store.commit(task)

    cpu0, wall0 = cpu_s(emulator_pid), time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lifecycle, made))
    wall, cpu = time.perf_counter() - wall0, cpu_s(emulator_pid) - cpu0
    commits = 2 * tasks
    write_calls = sum(calls[op] for op in WRITES)
    return {
        "write_calls_per_commit": round(write_calls / commits, 3),
        "emulator_cpu_ms_per_commit": round(1000 * cpu / commits, 3),
        "commits_per_s": round(commits / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--inflight", type=int, default=CoreSettings().write_max_inflight, help="batching on")
    parser.add_argument("--linger-ms", type=float, default=CoreSettings().write_linger_ms, help="batching on")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    proc, url = start_emulator("ministack", Path(tempfile.mkdtemp(prefix="tq-write-batching-")))
    try:
        print(f"{args.tasks} tasks (create + claim) from {args.threads} threads, ministack pid {proc.pid}")
        for n in range(args.rounds):
            for label, inflight, linger in (("off", 64, 0.0), ("on ", args.inflight, args.linger_ms)):
                result = one_run(url, proc.pid, args.tasks, args.threads, inflight, linger)
                print(f"round {n + 1} batching {label} ({inflight} in flight, {linger} ms): {result}", flush=True)
    finally:
        proc.stop()


if __name__ == "__main__":
    main()
