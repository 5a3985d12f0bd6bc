"""Bytes of a task's items after each state change, as DynamoDB sizes them (the cost model's input).

Starts ministack, then walks one echo task (payload ``{"n": 1}``) through submit, claim and success, and a
second task through 40 changes (PATCHes), printing after each step the size of every item of the task
(attribute names + values, DynamoDB's rule) and the write units a standard single-item write of it costs (1 per
KB of the larger of the item before and after, rounded up; a transactional write costs twice that; each index the
item is in costs again).

Usage: .venv/bin/python bench/item_sizes.py
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqcore.adapters import aws
from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.bootstrap import bootstrap
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings
from tqcore.usecases.service import mutate
from tqdev.emulator import start_emulator
from tqdev.stack import unique_prefix


def value_size(value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute value."""
    (kind, raw), *_ = value.items()
    if kind == "S":
        return len(raw.encode())
    if kind == "N":
        return len(raw.lstrip("-").replace(".", "").lstrip("0")) // 2 + 2
    if kind == "BOOL" or kind == "NULL":
        return 1
    if kind == "L":
        return 3 + sum(value_size(v) + 1 for v in raw)
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in raw.items())
    raise ValueError(kind)


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def sizes(client: Any, table: str, task_id: str) -> tuple[dict[str, int], int]:
    """Each item's size by sort key, and the bytes of the task item's inline events (``evts``)."""
    items = client.query(
        TableName=table,
        KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": keys.task_pk(task_id)}},
        ConsistentRead=True,
    )["Items"]
    inline = sum(len("evts") + value_size(item["evts"]) for item in items if "evts" in item)
    return {item["SK"]["S"]: item_size(item) for item in items}, inline


def show(step: str, found: tuple[dict[str, int], int]) -> None:
    by_sk, inline = found
    task = by_sk.get(keys.SNAPSHOT_SK, 0)
    history = sum(size for sk, size in by_sk.items() if sk != keys.SNAPSHOT_SK)
    print(
        f"{step:<24} task item {task:>5} B ({math.ceil(task / 1024)} WCU/write), of which inline events {inline:>5} B"
        f"   history items: {len(by_sk) - 1:>2}, {history:>5} B"
    )


def main() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    run_dir = Path(tempfile.mkdtemp(prefix="tq-sizes-"))
    with contextlib.ExitStack() as resources:
        emulator, endpoint = start_emulator("ministack", run_dir)
        resources.callback(emulator.stop)
        settings = CoreSettings(endpoint_url=endpoint, prefix=unique_prefix())
        bootstrap(settings)
        client = aws.client(settings, "dynamodb")
        store = DynamoTaskStore(client, settings)
        now = datetime.now(UTC)
        cmd = SubmitTask(type="echo", group="team-a", payload={"n": 1})
        task = Task.submit(
            task_id=new_task_id(), owner="alice", now=now, submitted=cmd.model_dump(mode="json"), **cmd.task_fields()
        )
        store.create(task)
        show("submitted+queued (v2)", sizes(client, settings.table_name, task.id))
        claimed = task.committed()
        claimed.claim(1, "host-a:4242", now, 30)
        store.commit(claimed)
        show("claimed (v3)", sizes(client, settings.table_name, task.id))
        assert claimed.claim_seq is not None
        store.extend_lease(task.id, claimed.claim_seq, now)
        show("heartbeat (v3)", sizes(client, settings.table_name, task.id))
        done = claimed.committed()
        done.succeed(1, "host-a:4242", {"ok": True}, now, claim_seq=claimed.claim_seq)
        store.commit(done)
        show("succeeded (v4)", sizes(client, settings.table_name, task.id))
        other = Task.submit(
            task_id=new_task_id(), owner="alice", now=now, submitted=cmd.model_dump(mode="json"), **cmd.task_fields()
        )
        store.create(other)
        current = store.get(other.id)
        task = other
        for n in range(1, 41):
            current = mutate(store, current, lambda t, n=n: t.update({"description": f"change {n}"}, "alice", now))
            if n in (12, 13, 14, 28, 29, 40):
                show(f"+{n} changes (v{current.version})", sizes(client, settings.table_name, task.id))


if __name__ == "__main__":
    main()
