"""The listing-memory scenario of issue 14: tasks whose payloads are 256 KiB of ``[{},{},...]``, listed page by
page through a real gateway, with its gunicorn workers' peak resident memory read from ``/proc``.

Shared by ``bench/listing_memory.py`` and ``tests/e2e/test_listing_memory.py``.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings
from tqcore.usecases.service import mutate

MIB = 1024 * 1024


def hostile_payload(size_bytes: int) -> list[dict[str, object]]:
    """``[{},{},...]`` of about ``size_bytes`` as compact JSON: ~87,000 empty objects per 256 KiB, about 6 MiB of
    Python objects once parsed."""
    return [{} for _ in range((size_bytes - 1) // 3)]


def store_tasks(
    settings: CoreSettings, group: str, count: int, payload: object, *, failed: bool = False, threads: int = 8
) -> list[str]:
    """Write ``count`` tasks straight through the store adapter, as if stored before payloads were bounded in
    nodes (the gateway refuses them now). Each is ``scheduled`` a day ahead, so no service acts on it, or with
    ``failed`` driven through the domain to ``failed`` (a dead letter)."""
    store = DynamoTaskStore(aws.client(settings, "dynamodb"), settings)
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    body = {"retry": {"max_retries": 0}} if failed else {"schedule": {"at": at}}
    cmd = SubmitTask.model_validate({"type": "echo", "group": group, **body})

    def one(_: int) -> str:
        now = datetime.now(UTC)
        fields = {**cmd.task_fields(), "payload": payload}
        task = Task.submit(task_id=new_task_id(), owner="alice", now=now, submitted={}, **fields)
        store.create(task)
        if failed:
            task = mutate(store, task.committed(), lambda t: t.claim(1, "bench:1", now, 30))
            mutate(
                store, task, lambda t: t.fail(1, "bench:1", ErrorInfo("Bench", "failed"), datetime.now(UTC), jitter=0)
            )
        return task.id

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, range(count)))


def gunicorn_workers(master_pid: int) -> list[int]:
    """The pids of a gunicorn master's workers (its children, from ``/proc``)."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == master_pid:
            workers.append(int(stat.parent.name))
    return sorted(workers)


def peak_rss_bytes(pid: int) -> int:
    """A process's peak resident set size so far (``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no VmHWM for pid {pid}")


@dataclass
class Listing:
    """What paging through a listing returned."""

    ids: list[str] = field(default_factory=list)
    #: (items, response bytes, seconds) per page.
    pages: list[tuple[int, int, float]] = field(default_factory=list)


def list_every_page(client: httpx.Client, path: str, params: dict[str, str | int], max_pages: int = 10_000) -> Listing:
    """Follow ``next_cursor`` from the first page to the last."""
    listing = Listing()
    cursor: str | None = None
    for _ in range(max_pages):
        started = time.perf_counter()
        response = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        response.raise_for_status()
        body = response.json()
        listing.pages.append((len(body["items"]), len(response.content), time.perf_counter() - started))
        listing.ids += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return listing
    raise AssertionError(f"{path}: still a next_cursor after {max_pages} pages")
