"""Benchmark the scheduler's sweep: one ``TaskStore.overdue`` query per sweep shard over N waiting tasks.

Starts ministack, creates N one-shot tasks due a day ahead (none overdue: the sweep's usual case), then times
three sweeps of every shard. On ministack a query costs by the items in its partition, so this is the sweep's
cost per N waiting tasks (on DynamoDB it costs by the overdue items returned).

Usage: .venv/bin/python bench/sweep_cost.py [--tasks 2000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.bootstrap import bootstrap
from tqcore.clock import SystemClock, new_task_id
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.settings import CoreSettings
from tqcore.testing import InMemoryRegistry, RecordingQueue
from tqcore.usecases.service import Catalog, Tasks
from tqdev.emulator import start_emulator


def main() -> None:
    """Create the waiting tasks, then print the time of each full sweep."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    with tempfile.TemporaryDirectory() as run_dir:
        emulator, endpoint = start_emulator("ministack", Path(run_dir))
        try:
            settings = CoreSettings(endpoint_url=endpoint, prefix="sweepbench")
            bootstrap(settings)
            store = DynamoTaskStore(aws.client(settings, "dynamodb"), settings)
            # Only the store matters here: the queue and registry are the in-memory ones.
            tasks = Tasks(store, RecordingQueue(), Catalog(InMemoryRegistry(["echo"])), SystemClock(), new_task_id)
            body = {
                "type": "echo",
                "group": "g",
                "schedule": {"at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
            }
            for _ in range(args.tasks):
                tasks.submit(SubmitTask.model_validate(body), Principal("bench", frozenset({"g"})))
            for _ in range(3):
                started = time.perf_counter()
                found = len(list(store.overdue(datetime.now(UTC))))
                took_ms = 1000 * (time.perf_counter() - started)
                print(f"{args.tasks} waiting: sweep {took_ms:.1f} ms, {found} overdue")
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
