"""Task-type catalog and service presence, kept in the same table as the tasks."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.table import Table
from tqcore.domain.codec import parse_ts, ts
from tqcore.settings import CoreSettings


class DynamoRegistry:
    """Which task types executors handle, and which service instances heartbeat."""

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        self._db = Table(client, settings.table_name)
        self._table = settings.table_name

    def register_types(self, types: Sequence[str], by: str, specs: Mapping[str, str] | None = None) -> None:
        """Record (idempotently) that ``by`` handles ``types``, with the spec it publishes for some of them (a type
        registered again takes the new registration's spec, or none)."""
        now = str(int(time.time()))
        items = []
        for name in types:
            item = {
                "PK": {"S": keys.CATALOG_PK},
                "SK": {"S": f"TYPE#{name}"},
                "registered_by": {"S": by},
                "registered_at": {"N": now},
            }
            if specs and name in specs:
                item["spec"] = {"S": specs[name]}
            items.append(item)
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            pending: dict[str, Any] = {self._table: requests}
            while pending:
                response = self._db.call("batch_write_item", RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}

    def task_types(self) -> dict[str, str | None]:
        """Every type any executor has registered, with its spec (``None`` for items written before specs)."""
        items = self._db.query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": keys.CATALOG_PK}},
        )
        return {item["SK"]["S"].removeprefix("TYPE#"): item.get("spec", {}).get("S") for item in items}

    def add_group(self, group: str) -> None:
        """Record (idempotently) that tasks exist in ``group``."""
        self._db.call(
            "put_item",
            TableName=self._table,
            Item={"PK": {"S": keys.GROUPS_PK}, "SK": {"S": f"G#{group}"}, "group": {"S": group}},
        )

    def groups(self) -> set[str]:
        """Every group tasks were submitted into."""
        items = self._db.query_all(
            KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": keys.GROUPS_PK}}
        )
        return {item["SK"]["S"].removeprefix("G#") for item in items}

    def heartbeat(self, service: str, instance: str, ttl_s: int) -> None:
        """Mark ``service``/``instance`` alive for ``ttl_s`` seconds."""
        until = int(time.time()) + ttl_s
        self._db.call(
            "put_item",
            TableName=self._table,
            Item={
                "PK": {"S": keys.PRESENCE_PK},
                "SK": {"S": f"{service}#{instance}"},
                "alive_until": {"N": str(until)},
                keys.TTL_ATTRIBUTE: {"N": str(until + 3600)},
            },
        )

    def leave(self, service: str, instance: str) -> None:
        """Remove ``service``/``instance`` from the live instances."""
        self._db.call(
            "delete_item",
            TableName=self._table,
            Key={"PK": {"S": keys.PRESENCE_PK}, "SK": {"S": f"{service}#{instance}"}},
        )

    def mark(self, name: str) -> datetime | None:
        """A named shared mark."""
        response = self._db.call(
            "get_item",
            TableName=self._table,
            Key={"PK": {"S": keys.MARK_PK}, "SK": {"S": name}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return parse_ts(item["at"]["S"]) if item else None

    def advance_mark(self, name: str, to: datetime) -> None:
        """Move a mark forward (a no-op if another replica already moved it further)."""
        self._db.conditional(
            "put_item",
            TableName=self._table,
            Item={"PK": {"S": keys.MARK_PK}, "SK": {"S": name}, "at": {"S": ts(to)}},
            ConditionExpression="attribute_not_exists(PK) OR #at < :to",
            ExpressionAttributeNames={"#at": "at"},
            ExpressionAttributeValues={":to": {"S": ts(to)}},
        )

    def alive(self) -> dict[str, list[str]]:
        """Instances whose heartbeat has not run out, by service."""
        items = self._db.query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": keys.PRESENCE_PK}},
        )
        now = int(time.time())
        alive: dict[str, list[str]] = {}
        for item in items:
            if int(item["alive_until"]["N"]) >= now:
                service, _, instance = item["SK"]["S"].partition("#")
                alive.setdefault(service, []).append(instance)
        return alive
