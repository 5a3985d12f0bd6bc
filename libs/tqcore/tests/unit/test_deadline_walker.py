"""The deadline walker's bookkeeping: which buckets a walk reads, and when its mark moves (the table stubbed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.deadlines import DeadlineWalker
from tqcore.domain.codec import parse_ts, ts

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 8, 0, 7, tzinfo=UTC)
MARGIN = timedelta(seconds=30)


class StubTable:
    """Index items by partition, the mark item, and every partition read, in order."""

    name = "stub"

    def __init__(self) -> None:
        self.items: dict[str, list[dict[str, Any]]] = {}
        self.mark: str | None = None
        self.read: list[str] = []

    def call(self, operation: str, **_: Any) -> dict[str, Any]:
        if operation == "describe_table":  # a table whose creation time DynamoDB does not tell
            return {"Table": {}}
        assert operation == "get_item"
        return {"Item": {"at": {"S": self.mark}}} if self.mark else {}

    def conditional(self, operation: str, **request: Any) -> dict[str, Any]:
        at = request["Item"]["at"]["S"]
        condition = request["ConditionExpression"]
        if self.mark is None or ("#at < :at" in condition and self.mark < at):
            self.mark = at
        return {}

    def query_pages(self, **request: Any) -> Iterator[dict[str, Any]]:
        partition = request["ExpressionAttributeValues"][":pk"]["S"]
        before = request["ExpressionAttributeValues"][":now"]["S"]
        self.read.append(partition)
        yield {"Items": [item for item in self.items.get(partition, []) if item["reap_sk"]["S"] < before]}

    def file(self, at: datetime, task_id: str) -> None:
        attrs = keys.reap_attributes(keys.LEASE, at, task_id, 1)
        self.items.setdefault(attrs["reap_pk"], []).append({"reap_sk": {"S": attrs["reap_sk"]}})

    def remove(self, task_id: str) -> None:
        for items in self.items.values():
            items[:] = [item for item in items if not item["reap_sk"]["S"].endswith(f"#{task_id}")]


def walker(table: StubTable) -> DeadlineWalker:
    return DeadlineWalker(table, keys.LEASE, shards=1, margin=MARGIN)  # type: ignore[arg-type]


def minutes_read(table: StubTable) -> list[str]:
    read = [partition.split("#")[2][-2:] for partition in table.read]
    table.read.clear()
    return read


def test_an_idle_walk_reads_the_bucket_of_now_and_each_ended_bucket_twice() -> None:
    table = StubTable()
    walks = walker(table)
    at = T0
    for _ in range(24):  # two minutes of passes every 5 s
        assert list(walks.walk(at)) == []
        at += timedelta(seconds=5)
    # Per minute: 12 reads of the minute under way, one of the minute just ended (then one more when it is sealed)
    read = minutes_read(table)
    assert read.count("00") == 11 + 1 + 1  # from 08:00:07 on
    assert read.count("01") == 12 + 1  # not yet sealed
    assert read.count("59") == 2  # the first mark: the minute the margin reaches back into
    mark = parse_ts(table.mark or "")
    assert mark is not None
    assert mark == T0.replace(second=0) + timedelta(minutes=1)


def test_a_deadline_nobody_acted_on_holds_the_mark_until_it_is_gone() -> None:
    table = StubTable()
    walks = walker(table)
    assert list(walks.walk(T0)) == []
    table.file(T0 + timedelta(seconds=20), "t-1")
    later = T0 + timedelta(minutes=10)
    assert len(list(walks.walk(later))) == 1
    assert list(walks.walk(later + timedelta(seconds=5))) != []
    assert table.mark == ts(T0.replace(second=0))
    # A restarted walker starts at the durable mark, finds it, and reads only what it must
    restarted = walker(table)
    assert len(list(restarted.walk(later))) == 1
    # Once acted on (its deadline moved), the next walk passes over its bucket and the mark follows
    table.remove("t-1")
    minutes_read(table)
    assert list(restarted.walk(later + timedelta(seconds=10))) == []
    assert table.mark == ts(keys.bucket_of(keys.LEASE, later + timedelta(seconds=10) - MARGIN))
    assert list(restarted.walk(later + timedelta(seconds=15))) == []
    assert len(minutes_read(table)) <= 4  # the minute just ended and the one under way, not the ten behind


def test_a_late_deadline_in_a_bucket_read_empty_is_found_when_the_bucket_is_sealed() -> None:
    table = StubTable()
    walks = walker(table)
    end = T0.replace(second=0) + timedelta(minutes=1)
    assert list(walks.walk(end + timedelta(seconds=1))) == []  # the ended minute read empty: quiet
    table.file(end - timedelta(seconds=2), "late")  # a writer's clock 3 s behind
    assert list(walks.walk(end + timedelta(seconds=6))) == []  # not read again before it is sealed
    assert len(list(walks.walk(end + MARGIN))) == 1
