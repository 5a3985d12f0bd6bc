"""Reading a task's history a page at a time: bounded key-range queries over its ``EVT#<seq>`` items.

A page is one range of sort keys (``BETWEEN`` two event keys) read forward (oldest first) or backward (newest
first) with ``Limit``, so a task with 50,000 events costs a page's worth of reads, not its whole history.
"""

from __future__ import annotations

import json
from typing import Any

from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.table import Table
from tqcore.domain.codec import event_from_dict
from tqcore.domain.model import Event

#: The highest sequence number an event key can hold (``keys.event_sk`` pads to 10 digits).
MAX_SEQ = 10**10 - 1


def events_after(db: Table, task_id: str, after_seq: int, limit: int | None) -> list[Event]:
    """The task's events after ``after_seq``, oldest first, at most ``limit`` (``None``: all)."""
    return events_between(db, task_id, max(after_seq, 0) + 1, MAX_SEQ, forward=True, limit=limit)


def events_before(db: Table, task_id: str, before_seq: int, limit: int) -> list[Event]:
    """At most ``limit`` of the task's events before ``before_seq``, newest first."""
    return events_between(db, task_id, 1, min(before_seq, MAX_SEQ + 1) - 1, forward=False, limit=limit)


def events_between(db: Table, task_id: str, low: int, high: int, *, forward: bool, limit: int | None) -> list[Event]:
    """Events with ``low <= seq <= high`` in one direction: one strongly consistent query, paged only when
    DynamoDB's 1 MB page cuts it short, asking each page for no more than what is still missing."""
    if low > high or (limit is not None and limit < 1):
        return []
    query: dict[str, Any] = {
        "TableName": db.name,
        "KeyConditionExpression": "PK = :pk AND SK BETWEEN :low AND :high",
        "ExpressionAttributeValues": {
            ":pk": {"S": keys.task_pk(task_id)},
            ":low": {"S": keys.event_sk(low)},
            ":high": {"S": keys.event_sk(high)},
        },
        "ScanIndexForward": forward,
        "ConsistentRead": True,
    }
    events: list[Event] = []
    while True:
        if limit is not None:
            query["Limit"] = limit - len(events)
        page = db.call("query", **query)
        events += [event_from_dict(json.loads(item["doc"]["S"])) for item in page.get("Items", [])]
        start = page.get("LastEvaluatedKey")
        if not start or (limit is not None and len(events) >= limit):
            return events
        query["ExclusiveStartKey"] = start
