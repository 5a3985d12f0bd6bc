"""Task-type catalog and service presence, kept in the same table as the tasks.

Each ``TYPE#<name>`` item of the catalog holds the pool whose executors serve the type, the defaults and payload
schema its handler declares (JSON text), the spec it publishes (the ``script`` type's allow-list), and which
executor registered it when.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from tqcore.activity import Activity
from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.table import Table
from tqcore.domain.codec import parse_ts, ts
from tqcore.errors import TypeServedElsewhere
from tqcore.ports import LiveInstance, TypeInfo
from tqcore.settings import DEFAULT_POOL, CoreSettings


class DynamoRegistry:
    """Which task types executors handle, and which service instances heartbeat."""

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        self._db = Table(client, settings.table_name)
        self._table = settings.table_name

    def register_types(
        self,
        types: Sequence[str | TypeInfo],
        by: str,
        specs: Mapping[str, str] | None = None,
        *,
        alive: Collection[str] | None = None,
    ) -> None:
        """Record (idempotently) that ``by`` handles ``types``, each with its pool, defaults, payload schema and
        spec (a type registered again takes the new registration's, or none).

        With ``alive`` each type is written only if it is new, already in the same pool, or its registering
        executor is not alive: every type is checked before any is written, so a refusal (``TypeServedElsewhere``)
        moves none of them; each write is then conditional on the registration that was read, so an executor of
        another pool that registered in between is not overwritten unseen (a race in which each of two starting
        executors wins some types ends with one of them refused, and its types re-registered at its next start).
        """
        infos = [_info(t, specs) for t in types]
        now = int(time.time())
        if alive is None:
            self._put_all([_item(info, by, now) for info in infos])
            return
        live = set(alive)
        for info in infos:
            self._served_elsewhere(self._current(info.name), info, live)
        for info in infos:
            self._claim(info, by, now, live)

    def _current(self, name: str) -> dict[str, Any] | None:
        response = self._db.call("get_item", TableName=self._table, Key=_key(name), ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item

    @staticmethod
    def _served_elsewhere(current: dict[str, Any] | None, info: TypeInfo, alive: set[str]) -> TypeInfo:
        """The registration read (or ``info`` if none); ``TypeServedElsewhere`` if a live executor of another
        pool holds the type."""
        if current is None:
            return info
        seen = _read(current)
        if seen.pool != info.pool and seen.registered_by in alive:
            raise TypeServedElsewhere(info.name, seen.pool, seen.registered_by)
        return seen

    def _claim(self, info: TypeInfo, by: str, now: int, alive: set[str]) -> None:
        seen = info
        for _ in range(5):  # each lost race means another executor registered it meanwhile: look again
            current = self._current(info.name)
            seen = self._served_elsewhere(current, info, alive)
            if current is not None:
                condition = {
                    "ConditionExpression": "registered_by = :by AND registered_at = :at",
                    "ExpressionAttributeValues": {
                        ":by": current["registered_by"],
                        ":at": current["registered_at"],
                    },
                }
            else:
                condition = {"ConditionExpression": "attribute_not_exists(SK)"}
            if self._db.conditional("put_item", TableName=self._table, Item=_item(info, by, now), **condition):
                return
        # Five registrations in a row slipped in between a read and a write: executors of other pools keep starting.
        raise TypeServedElsewhere(info.name, seen.pool, seen.registered_by or "another executor")

    def _put_all(self, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            pending: dict[str, Any] = {self._table: requests}
            while pending:
                response = self._db.call("batch_write_item", RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}

    def task_types(self) -> dict[str, TypeInfo]:
        """Every type any executor has registered (items written before pools: the default pool, no defaults)."""
        items = self._db.query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": keys.CATALOG_PK}},
        )
        return {info.name: info for info in map(_read, items)}

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

    def heartbeat(self, service: str, instance: str, ttl_s: int, activity: Activity | None = None) -> None:
        """Mark ``service``/``instance`` alive for ``ttl_s`` seconds, with its recent activity (JSON text)."""
        until = int(time.time()) + ttl_s
        item = {
            "PK": {"S": keys.PRESENCE_PK},
            "SK": {"S": f"{service}#{instance}"},
            "alive_until": {"N": str(until)},
            keys.TTL_ATTRIBUTE: {"N": str(until + 3600)},
        }
        if activity is not None:
            item["activity"] = {"S": activity.to_json()}
        self._db.call("put_item", TableName=self._table, Item=item)

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
        alive: dict[str, list[str]] = {}
        for item in self._live_items():
            service, _, instance = item["SK"]["S"].partition("#")
            alive.setdefault(service, []).append(instance)
        return alive

    def instances(self) -> list[LiveInstance]:
        """Live instances with their activity (items written before heartbeats carried any: none)."""
        found = []
        for item in self._live_items():
            service, _, instance = item["SK"]["S"].partition("#")
            text = item.get("activity", {}).get("S")
            found.append(LiveInstance(service, instance, None if text is None else Activity.from_json(text)))
        return sorted(found, key=lambda live: (live.service, live.name))

    def _live_items(self) -> list[dict[str, Any]]:
        """The presence items whose heartbeat has not run out."""
        items = self._db.query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": keys.PRESENCE_PK}},
        )
        now = int(time.time())
        return [item for item in items if int(item["alive_until"]["N"]) >= now]


def _info(type_: str | TypeInfo, specs: Mapping[str, str] | None) -> TypeInfo:
    """A bare name as the catalog record of a default-pool type, its spec from ``specs``."""
    if isinstance(type_, TypeInfo):
        return type_
    return TypeInfo(type_, spec=(specs or {}).get(type_))


def _key(name: str) -> dict[str, Any]:
    return {"PK": {"S": keys.CATALOG_PK}, "SK": {"S": f"TYPE#{name}"}}


def _item(info: TypeInfo, by: str, now: int) -> dict[str, Any]:
    """A type's catalog item: ``spec``, ``defaults`` and ``payload_schema`` as JSON text (absent when empty)."""
    item = {
        **_key(info.name),
        "pool": {"S": info.pool},
        "defaults": {"S": json.dumps(dict(info.defaults), sort_keys=True)},
        "registered_by": {"S": by},
        "registered_at": {"N": str(now)},
    }
    if info.spec is not None:
        item["spec"] = {"S": info.spec}
    if info.payload_schema is not None:
        item["payload_schema"] = {"S": json.dumps(info.payload_schema, sort_keys=True)}
    return item


def _read(item: dict[str, Any]) -> TypeInfo:
    schema = item.get("payload_schema", {}).get("S")
    return TypeInfo(
        name=item["SK"]["S"].removeprefix("TYPE#"),
        pool=item.get("pool", {}).get("S", DEFAULT_POOL),
        spec=item.get("spec", {}).get("S"),
        defaults=json.loads(item.get("defaults", {}).get("S", "{}")),
        payload_schema=None if schema is None else json.loads(schema),
        registered_by=item.get("registered_by", {}).get("S", ""),
        registered_at=int(item.get("registered_at", {}).get("N", "0")),
    )
