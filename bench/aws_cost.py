"""What an immediate task costs on AWS: DynamoDB write units (table and indexes), SQS requests, S3 requests.

Runs N immediate tasks (submit, claim, succeed) through tq's own DynamoDB task store against ministack, from
``--threads`` threads at once (so concurrent writes share transactions as they do under load), and watches every
DynamoDB call the store makes through botocore's event hooks: for each item a write touches it reads the item
just before and just after (with a second, unwatched client) and charges what DynamoDB on-demand would:

- the table: ceil(max(size before, size after) / 1 KB) write units per item written, twice that inside a
  ``TransactWriteItems``; a conditional write whose condition fails is charged too;
- each global secondary index: an entry put, removed or rewritten when the item enters, leaves, changes keys
  (delete + put) or changes projected attributes (``ALL`` projection: any change; ``KEYS_ONLY``: key changes only),
  ceil(projected size / 1 KB) each.

SQS requests per task are the measured figures of a run (``--sqs-per-task``, from the peer harness or
``make bench``); S3 costs nothing for a task that prints nothing (a run log is one ``PutObject``).

Usage: .venv/bin/python bench/aws_cost.py [--tasks 200] [--threads 8] [--sqs-per-task 1.65] [--keyed] [--cpu-only]
(``--cpu-only``: no metering, only ministack's CPU per task for the store's writes.)
Prices: us-east-1 on-demand, 2026: DynamoDB $0.625 per million write request units, $0.125 per million read
request units; SQS FIFO $0.50 per million requests (64 KiB chunks); S3 PUT $0.005 per thousand.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.bootstrap import bootstrap, global_secondary_indexes
from tqcore.clock import new_task_id
from tqcore.domain.task import Task
from tqcore.ports import IdempotencyRecord
from tqcore.settings import CoreSettings
from tqdev.emulator import start_emulator
from tqdev.stack import unique_prefix

WRU_USD_PER_MILLION = 0.625
RRU_USD_PER_MILLION = 0.125
SQS_FIFO_USD_PER_MILLION = 0.50
KB = 1024


def value_size(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value (docs: "Item sizes and formats")."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = len(Decimal(inner).as_tuple().digits)
        return (digits + 1) // 2 + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())
    if kind == "SS":
        return sum(len(v.encode()) for v in inner)
    if kind == "NS":
        return sum(value_size({"N": v}) for v in inner)
    raise ValueError(kind)


Index = tuple[str, str, str]  # partition key attribute, sort key attribute, projection type


def index_units(index: Index, old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
    """Write units one index spends on a table write that turned ``old`` into ``new``."""
    pk, sk, projection = index

    def entry(item: dict[str, Any] | None) -> tuple[str, str] | None:
        return (item[pk]["S"], item[sk]["S"]) if item and pk in item and sk in item else None

    def units(item: dict[str, Any] | None) -> int:
        only = {"PK", "SK", pk, sk} if projection == "KEYS_ONLY" else None
        return math.ceil(item_size(item, only) / KB)

    was, now = entry(old), entry(new)
    if was is None and now is None:
        return 0
    if was != now:  # entered, left or moved: a delete and/or a put
        return (units(old) if was else 0) + (units(new) if now else 0)
    if projection != "KEYS_ONLY" and old != new:
        return max(units(old), units(new))
    return 0


def item_size(item: dict[str, Any] | None, only: set[str] | None = None) -> int:
    """Size of an item (or of the named attributes of it)."""
    if not item:
        return 0
    return sum(len(k.encode()) + value_size(v) for k, v in item.items() if only is None or k in only)


class Meter:
    """Charges every DynamoDB write the watched client makes, by operation."""

    def __init__(self, raw: Any, table: str) -> None:
        self._raw = raw
        self._table = table
        self._lock = threading.Lock()
        self._local = threading.local()
        self.calls: Counter[str] = Counter()
        self.items: Counter[str] = Counter()
        self.wru_table = 0.0
        self.wru_index = 0.0
        self.sizes: dict[str, list[int]] = {}
        self.indexes = [
            (
                ix["KeySchema"][0]["AttributeName"],
                ix["KeySchema"][1]["AttributeName"],
                ix["Projection"]["ProjectionType"],
            )
            for ix in global_secondary_indexes()
        ]

    def watch(self, client: Any) -> None:
        client.meta.events.register("provide-client-params.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.*", self._after)

    def _keys(self, operation: str, params: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
        if operation == "PutItem":
            return [({"PK": params["Item"]["PK"], "SK": params["Item"]["SK"]}, 1)]
        if operation in ("UpdateItem", "DeleteItem"):
            return [(params["Key"], 1)]
        if operation == "TransactWriteItems":
            found = []
            for entry in params["TransactItems"]:
                body = next(iter(entry.values()))
                key = body["Key"] if "Key" in body else {"PK": body["Item"]["PK"], "SK": body["Item"]["SK"]}
                found.append((key, 2))
            return found
        return []

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        keyed = self._keys(model.name, params)
        before = [self._get(key) for key, _ in keyed]
        self._local.pending = (model.name, keyed, before)
        with self._lock:
            self.calls[model.name] += 1
            self.items[model.name] += len(keyed)

    def _after(self, model: Any, **_: Any) -> None:
        name, keyed, before = getattr(self._local, "pending", (None, [], []))
        if name != model.name:
            return
        for (key, factor), old in zip(keyed, before, strict=True):
            new = self._get(key)
            size = max(item_size(old), item_size(new))
            with self._lock:
                self.wru_table += factor * math.ceil(size / KB) if size else factor
                self.wru_index += self._index_units(old, new)
                if new:
                    self.sizes.setdefault(new["SK"]["S"].split("#")[0], []).append(item_size(new))

    def _index_units(self, old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
        return sum(index_units(index, old, new) for index in self.indexes)

    def _get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._raw.get_item(TableName=self._table, Key=key, ConsistentRead=True).get(
            "Item"
        )
        return item


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def echo_task(n: int, now: datetime) -> Task:
    """A new immediate echo task of alice's in team-a, its payload ``{"n": n}``."""
    return Task.submit(
        task_id=new_task_id(),
        type="echo",
        group="team-a",
        owner="alice",
        now=now,
        submitted={"type": "echo", "group": "team-a", "payload": {"n": n}},
        payload={"n": n},
    )


def run_task(store: DynamoTaskStore, keyed: bool, n: int) -> None:
    now = datetime.now(UTC)
    task = echo_task(n, now)
    record = IdempotencyRecord("team-a", f"key-{task.id}", "f" * 64, task.id) if keyed else None
    store.create(task, record)
    task = task.committed()
    task.claim(1, "host:1", now, 30)
    store.commit(task)
    task = task.committed()
    task.succeed(1, "host:1", {"n": n}, now, claim_seq=task.claim_seq)
    store.commit(task)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--sqs-per-task", type=float, default=1.65, help="SQS requests per task, measured")
    parser.add_argument("--keyed", action="store_true", help="every submit carries an idempotency key")
    parser.add_argument(
        "--cpu-only", action="store_true", help="no metering (its reads cost the emulator too): ministack CPU per task"
    )
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    with tempfile.TemporaryDirectory() as tmp:
        proc, endpoint = start_emulator("ministack", Path(tmp))
        try:
            settings = CoreSettings(endpoint_url=endpoint, prefix=unique_prefix())
            bootstrap(settings)
            meter = Meter(aws.client(settings, "dynamodb"), settings.table_name)
            client = aws.client(settings, "dynamodb")
            if not args.cpu_only:
                meter.watch(client)
            store = DynamoTaskStore(client, settings)
            cpu_before = process_cpu_s(proc.pid)
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(lambda n: run_task(store, args.keyed, n), range(args.tasks)))
            emulator_ms = 1000 * (process_cpu_s(proc.pid) - cpu_before) / args.tasks
        finally:
            proc.stop()
    n = args.tasks
    wru = (meter.wru_table + meter.wru_index) / n
    print(f"{n} immediate tasks from {args.threads} threads{' with idempotency keys' if args.keyed else ''}")
    if args.cpu_only:
        print(f"ministack CPU per task: {emulator_ms:.2f} ms")
        return
    print(
        "DynamoDB calls per task: "
        + ", ".join(
            f"{op} {c / n:.2f} ({meter.items[op] / max(c, 1):.1f} items)" for op, c in sorted(meter.calls.items())
        )
    )
    for kind, sizes in sorted(meter.sizes.items()):
        print(f"item {kind}: {min(sizes)}-{max(sizes)} bytes after a write (mean {sum(sizes) / len(sizes):.0f})")
    print(f"ministack CPU per task: {emulator_ms:.2f} ms (the metering's reads included: see --cpu-only)")
    print(f"write units per task: table {meter.wru_table / n:.2f}, indexes {meter.wru_index / n:.2f}, total {wru:.2f}")
    ddb = wru * WRU_USD_PER_MILLION
    sqs = args.sqs_per_task * SQS_FIFO_USD_PER_MILLION
    print(
        f"per million tasks: DynamoDB ${ddb:.2f} + SQS ${sqs:.2f} ({args.sqs_per_task} requests per task) "
        f"+ S3 $0.00 = ${ddb + sqs:.2f}"
    )


if __name__ == "__main__":
    main()
