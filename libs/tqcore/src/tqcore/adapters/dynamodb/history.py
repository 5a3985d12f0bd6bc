"""Reading a task's history a page at a time: bounded key-range queries over its event items.

A task's events live in history partitions of ``keys.HISTORY_BUCKET`` consecutive seqs (``HIST#<id>#<bucket>``,
sort key ``EVT#<seq>``). A page is a range of sort keys read forward (oldest first) or backward (newest first)
with ``Limit`` in the one or two partitions it spans, so a task with 50,000 events costs a page's worth of
reads, not its whole history (on the emulators a query also costs what its partition holds: a bucket's worth).

Events expire (TTL) oldest first, so the history may start after seq 1, and an expired event may linger a few
days: a read backward stops at the first empty partition; a read forward that finds a partition short of its end
stops if the last event it found is too young to have expired (nothing newer exists), and otherwise asks the
task's version how far to go on.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.table import Table
from tqcore.domain.codec import event_from_dict
from tqcore.domain.model import Event

#: The highest sequence number an event key can hold (``keys.event_sk`` pads to 10 digits).
MAX_SEQ = 10**10 - 1


def events_after(db: Table, task_id: str, after_seq: int, limit: int | None, retention_days: int) -> list[Event]:
    """The task's events after ``after_seq``, oldest first, at most ``limit`` (``None``: all)."""
    events: list[Event] = []
    seq, newest = max(after_seq, 0) + 1, None
    unexpired = datetime.now(UTC) - timedelta(days=retention_days)
    while seq <= MAX_SEQ and (limit is None or len(events) < limit):
        end = _bucket_end(seq)
        found = _read(db, task_id, seq, end, forward=True, limit=None if limit is None else limit - len(events))
        events += found
        if found and found[-1].seq == end:  # the partition is full to its end: the next one may hold more
            seq = end + 1
            continue
        if found and found[-1].at > unexpired:  # short of its end, and nothing after it can have expired
            break
        newest = _version(db, task_id) if newest is None else newest
        if end >= newest:
            break
        seq = end + 1
    return events[:limit] if limit is not None else events


def events_before(db: Table, task_id: str, before_seq: int, limit: int) -> list[Event]:
    """At most ``limit`` of the task's events before ``before_seq``, newest first."""
    events: list[Event] = []
    seq, jumped = min(before_seq, MAX_SEQ + 1) - 1, False
    while seq >= 1 and len(events) < limit:
        start = keys.history_bucket(seq) * keys.HISTORY_BUCKET
        found = _read(db, task_id, start, seq, forward=False, limit=limit - len(events))
        if not found and not events and not jumped:  # past the newest event (or all expired): start at the newest
            seq, jumped = min(seq, _version(db, task_id)), True
            if seq < start:
                continue
            break
        if not found:  # an empty partition: everything older has expired
            break
        events += found
        seq, jumped = start - 1, True
    return events


def _bucket_end(seq: int) -> int:
    return min((keys.history_bucket(seq) + 1) * keys.HISTORY_BUCKET - 1, MAX_SEQ)


def _read(db: Table, task_id: str, low: int, high: int, *, forward: bool, limit: int | None) -> list[Event]:
    """Events with ``low <= seq <= high`` of one history partition in one direction: one strongly consistent
    query, paged only when DynamoDB's 1 MB page cuts it short, asking each page for no more than is missing."""
    query: dict[str, Any] = {
        "TableName": db.name,
        "KeyConditionExpression": "PK = :pk AND SK BETWEEN :low AND :high",
        "ExpressionAttributeValues": {
            ":pk": {"S": keys.event_pk(task_id, low)},
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


def _version(db: Table, task_id: str) -> int:
    """The task's version (its newest event's seq), 0 for no task: one strongly consistent ``GetItem``."""
    item = db.call(
        "get_item",
        TableName=db.name,
        Key={"PK": {"S": keys.task_pk(task_id)}, "SK": {"S": keys.SNAPSHOT_SK}},
        ProjectionExpression="version",
        ConsistentRead=True,
    ).get("Item")
    return int(item["version"]["N"]) if item else 0
