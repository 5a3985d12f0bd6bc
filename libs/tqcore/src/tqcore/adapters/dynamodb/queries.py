"""Read-side listings from tq's table indexes (the ``TaskQueries`` port)."""

from __future__ import annotations

import json
import logging
from typing import Any

from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.table import Table
from tqcore.domain.codec import task_from_dict
from tqcore.domain.task import Task
from tqcore.queries import dlq_after, encode_cursor
from tqcore.settings import CoreSettings

log = logging.getLogger(__name__)


class DynamoTaskQueries:
    """Listings served by the table's global secondary indexes (eventually consistent, like any GSI)."""

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        self._db = Table(client, settings.table_name)

    def dead_lettered(self, group: str, limit: int, cursor: str | None = None) -> tuple[list[Task], str | None]:
        """Up to ``limit`` failed tasks of ``group`` from the sparse ``dlq`` index, newest first, after ``cursor``."""
        pk, sk = keys.INDEXES["dlq"]
        condition = f"{pk} = :pk"
        values = {":pk": {"S": f"DLQ#{group}"}}
        if cursor is not None:
            # The cursor is a position in the sort key's order, so it works for any group (merged listings).
            condition += f" AND {sk} < :before"
            values[":before"] = {"S": dlq_after(cursor)}
        found = self._newest(condition, values, want=limit + 1)  # one more tells whether a next page exists
        page = found[:limit]
        more = len(found) > limit
        return [task for _, task in page], (encode_cursor("dlq", page[-1][0]) if more else None)

    def _newest(self, condition: str, values: dict[str, Any], *, want: int) -> list[tuple[str, Task]]:
        """``(sort key, task)`` of up to ``want`` items, newest first, across as many pages as it takes;
        an item that cannot be decoded is logged and skipped."""
        found: list[tuple[str, Task]] = []
        start: dict[str, Any] | None = None
        while len(found) < want:
            page = self._db.call(
                "query",
                TableName=self._db.name,
                IndexName="dlq",
                KeyConditionExpression=condition,
                ExpressionAttributeValues=values,
                ScanIndexForward=False,
                Limit=want - len(found),
                **({"ExclusiveStartKey": start} if start else {}),
            )
            for item in page.get("Items", []):
                try:
                    found.append((item["dlq_sk"]["S"], task_from_dict(json.loads(item["doc"]["S"]))))
                except (KeyError, ValueError, TypeError):
                    log.error("skipping an undecodable dead letter %s", item.get("PK"), exc_info=True)
            start = page.get("LastEvaluatedKey")
            if not start:
                break
        return found
