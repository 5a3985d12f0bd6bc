"""Benchmark bounded history reads (issue 15): ``/runs?limit=50`` and ``/events?limit=100`` of a repeating task
with 50,000 events against one with 6 (one run) and one with 1,002 (250 runs: pages as full as the long one's).

Starts ministack and a local stack (gunicorn gateway, scheduler, reaper, no executors), stores two repeating tasks
whose next slot is a day ahead (so no service acts on them) and writes a long one's history through the store
adapter's own commit (a repeating task's runs, one a minute up to now: queued for its slot, claimed, succeeded, next
slot scheduled; 90 events per commit), then times each endpoint over HTTP for both tasks. For reference it also
times what every ``/runs`` and ``/events`` request did before the change: read the whole history and project it
(through today's adapter; before, the events also shared the snapshot's partition, which the emulator scans whole on
every query of the task).

Usage: .venv/bin/python bench/history_reads.py [--events 50000] [--requests 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Event, EventType
from tqcore.domain.runs import project_runs
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings
from tqdev.stack import Stack, benchmark_stack

#: Events per commit while writing the history (a transaction holds at most 100 items with the snapshot).
CHUNK = 90


def run_events(seq: int, run: int, slot: datetime) -> list[Event]:
    """The four events of one run of a repeating task, from ``seq`` on."""
    run_id = f"{run}.1"
    at = slot + timedelta(seconds=1)
    return [
        Event(seq, EventType.QUEUED, slot, "scheduler", {"attempt": 1, "priority": "normal", "scheduled_for": slot}),
        Event(
            seq + 1, EventType.CLAIMED, at, "executor:bench:1", {"attempt": 1, "run_id": run_id, "worker": "bench:1"}
        ),
        Event(seq + 2, EventType.SUCCEEDED, at, "executor:bench:1", {"attempt": 1, "run_id": run_id, "duration_ms": 3}),
        Event(seq + 3, EventType.SCHEDULED, at, "scheduler", {"next_run_at": slot + timedelta(minutes=1)}),
    ]


def store_repeating_task(store: DynamoTaskStore, events: int) -> str:
    """A repeating task stored with about ``events`` events (its own two, then runs of four, one a minute up to
    now: recent enough that no event has expired), whose next slot is a day ahead (no service acts on it)."""
    now = datetime.now(UTC)
    runs = max(0, (events - 2) // 4)
    born = now - timedelta(minutes=runs + 1)
    cmd = SubmitTask.model_validate(
        {
            "type": "echo",
            "group": "team-a",
            "schedule": {"every_s": 60, "start_at": (now + timedelta(days=1)).isoformat()},
        }
    )
    task = Task.submit(task_id=new_task_id(), owner="alice", now=born, submitted={}, **cmd.task_fields())
    store.create(task)
    task = task.committed()
    history: list[Event] = []
    for run in range(1, runs + 1):
        history += run_events(task.version + 1 + len(history), run, born + timedelta(minutes=run))
    for first in range(0, len(history), CHUNK):
        chunk = history[first : first + CHUNK]
        task = replace(task, version=chunk[-1].seq, pending_events=chunk)
        store.commit(task)
        task = replace(task, pending_events=[])
    return task.id


def timed(client: httpx.Client, path: str, params: dict[str, str | int], requests: int) -> tuple[list[float], dict]:
    seconds, body = [], {}
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path, params=params)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
        body = response.json()
    return seconds, body


def ms(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"p50 {statistics.median(seconds) * 1000:7.1f} ms, p90 {p90 * 1000:7.1f} ms, max {max(seconds) * 1000:7.1f} ms"
    )


def run(stack: Stack, args: argparse.Namespace) -> None:
    settings = CoreSettings(endpoint_url=stack.config.endpoint_url, prefix=stack.config.prefix)
    store = DynamoTaskStore(aws.client(settings, "dynamodb"), settings)
    started = time.monotonic()
    tasks = {n: store_repeating_task(store, n) for n in (args.small, args.middle, args.events)}
    versions = {n: store.get(task_id).version for n, task_id in tasks.items()}
    print(f"stored tasks with {sorted(versions.values())} events in {time.monotonic() - started:.1f} s")
    with httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=300) as alice:
        for n, task_id in tasks.items():
            print(f"task with {versions[n]} events:")
            runs, body = timed(alice, f"/v1/tasks/{task_id}/runs", {"limit": 50}, args.requests)
            print(f"  GET /runs?limit=50            {ms(runs)}  ({len(body['items'])} runs)")
            if body["next_cursor"]:
                params = {"limit": 50, "cursor": body["next_cursor"]}
                runs, body = timed(alice, f"/v1/tasks/{task_id}/runs", params, args.requests)
                print(f"  GET /runs?limit=50 (page 2)   {ms(runs)}  ({len(body['items'])} runs)")
            events, body = timed(alice, f"/v1/tasks/{task_id}/events", {"limit": 100}, args.requests)
            print(f"  GET /events?limit=100         {ms(events)}  ({len(body['items'])} events)")
            started = time.perf_counter()
            whole = store.events(task_id)
            projected = project_runs(whole)
            took = (time.perf_counter() - started) * 1000
            print(f"  whole history, as every request read it before: {len(whole)} events, {len(projected)} runs,")
            print(f"    read through the adapter and projected in process: {took:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--small", type=int, default=6, help="events of the short-lived task (one run)")
    parser.add_argument("--middle", type=int, default=1002, help="events of a task with a few pages of runs")
    args = parser.parse_args()
    with benchmark_stack("history") as stack:
        run(stack, args)


if __name__ == "__main__":
    main()
