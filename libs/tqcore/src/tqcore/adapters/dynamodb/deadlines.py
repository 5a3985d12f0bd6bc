"""Walking the ``reap`` index's deadline buckets from a durable mark: what the reaper and the scheduler's sweep read.

Each kind of deadline (``keys.RESEND``, ``keys.LEASE``, ``keys.SWEEP``) sits in time buckets of its own width and
in shards (``keys.reap_attributes``). A walk at ``now`` reads every deadline before ``now``, bucket by bucket, from
the kind's *mark* to the bucket ``now`` falls in. So a backlog waiting for later deadlines costs a walk nothing:
its buckets are not yet read.

The mark (``MARK / reap-<kind>``, shared by replicas) is the start of the oldest bucket that may still hold a
deadline. It moves past a bucket only once that bucket has been read empty at a time when it can no longer receive
one: ``margin`` after its end. Writers file a deadline under its own time, which is never before the write for a
re-send or a lease (they lie ahead of it) and never before the write for due work (``keys.due_at``), so only a
writer's clock behind the walker's by more than ``margin`` (or an index lagging that much) could file one behind
the mark. A deadline its reader did not act on (its commit failed) stays in its bucket and holds the mark there:
the walker needs no word from its caller. What a walk read empty after a bucket's end is not read again until
that bucket is sealed (one more read, for late writes), and a sealed empty bucket never again; so an idle walk
reads the bucket of ``now`` per shard, plus two reads per bucket that ended.

A table without a mark (a new one) is walked from the bucket of its creation (``DescribeTable``) less the margin,
so deadlines written before the first walk (writers started before any reaper, a reaper crash-looping) are found;
but from ``NO_MARK_LOOKBACK`` back at most, and never from later than the first walk's ``now`` less the margin.
The mark is put at once. A one-off backfill that files a deadline behind the mark moves the mark back to it
(:func:`lower_mark`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.table import Table
from tqcore.domain.codec import parse_ts, ts

log = logging.getLogger(__name__)

#: Index items per query page.
PAGE_SIZE = 100
#: How late a deadline may still be filed in a bucket after the bucket's end (writers' clocks behind the
#: walker's, an index lagging): a re-send or a lease lies ahead of its write, due work may be due at once.
MARGINS = {
    keys.RESEND: timedelta(seconds=30),
    keys.LEASE: timedelta(seconds=30),
    keys.SWEEP: timedelta(minutes=10),
}
#: Where a walk starts on a table found without a mark: this far back (one long first walk, then the mark).
NO_MARK_LOOKBACK = timedelta(hours=24)


def first_mark(kind: str, now: datetime, created_at: datetime | None) -> datetime:
    """Where the first walk of a kind starts on a table created at ``created_at`` (``None``: unknown)."""
    start = now - MARGINS[kind]
    if created_at is not None:
        start = min(start, max(created_at - MARGINS[kind], now - NO_MARK_LOOKBACK))
    return keys.bucket_of(kind, start)


def table_created_at(db: Table) -> datetime | None:
    """When the table was created (``None`` if DynamoDB does not say)."""
    created = db.call("describe_table", TableName=db.name).get("Table", {}).get("CreationDateTime")
    return created.astimezone(UTC) if isinstance(created, datetime) else None


def mark_name(kind: str) -> str:
    """The ``MARK`` item (sort key) of a kind's walk."""
    return f"reap-{kind}"


def read_mark(db: Table, kind: str) -> datetime | None:
    """The kind's durable mark, if any."""
    answer = db.call(
        "get_item",
        TableName=db.name,
        Key={"PK": {"S": keys.MARK_PK}, "SK": {"S": mark_name(kind)}},
        ConsistentRead=True,
    )
    item = answer.get("Item")
    return parse_ts(item["at"]["S"]) if item else None


def _put_mark(db: Table, kind: str, at: datetime, condition: str) -> None:
    compares = {"ExpressionAttributeNames": {"#at": "at"}, "ExpressionAttributeValues": {":at": {"S": ts(at)}}}
    db.conditional(
        "put_item",
        TableName=db.name,
        Item={"PK": {"S": keys.MARK_PK}, "SK": {"S": mark_name(kind)}, "at": {"S": ts(at)}},
        ConditionExpression=condition,
        **(compares if ":at" in condition else {}),
    )


def advance_mark(db: Table, kind: str, to: datetime) -> None:
    """Move the kind's mark forward to ``to`` (a no-op if it is already there or further)."""
    _put_mark(db, kind, to, "attribute_exists(PK) AND #at < :at")


def lower_mark(db: Table, kind: str, to: datetime) -> None:
    """Move the kind's mark back to the bucket of ``to`` (or put it there, if there is none yet; a no-op if it is
    already further back): what a writer filing a deadline behind the mark must do."""
    _put_mark(db, kind, keys.bucket_of(kind, to), "attribute_not_exists(PK) OR #at > :at")


class DeadlineWalker:
    """Reads one kind's deadlines before a time, from its mark; one per kind and process, shared by its threads."""

    def __init__(
        self,
        db: Table,
        kind: str,
        *,
        shards: int,
        margin: timedelta,
        page_size: int = PAGE_SIZE,
        reread_mark: bool = False,
    ) -> None:
        self._db = db
        self._kind = kind
        self._width = keys.BUCKET_WIDTH[kind]
        self._shards = shards
        self._margin = margin
        self._page_size = page_size
        #: Re-read the durable mark at each walk (the sweep's: a backfill may move it back).
        self._reread_mark = reread_mark
        self._lock = threading.Lock()
        self._mark: datetime | None = None
        #: Buckets after the mark read empty once sealed: never read again.
        self._closed: set[datetime] = set()
        #: Buckets read empty after their end, not yet sealed: read once more when sealed.
        self._quiet: set[datetime] = set()

    def walk(self, now: datetime, *, projection: str | None = None) -> Iterator[dict[str, Any]]:
        """Every index item of the kind whose deadline is before ``now``, bucket by bucket from the mark, oldest
        bucket first (each bucket's shards in turn, each in deadline order), paged as the caller reads on. The mark
        moves only once the walk has been read to its end."""
        start = self._start(now)
        with self._lock:
            closed, quiet = set(self._closed), set(self._quiet)
        bucket, last = start, keys.bucket_of(self._kind, now)
        while bucket <= last:
            end = bucket + self._width
            sealed = now >= end + self._margin
            if bucket in closed or (bucket in quiet and not sealed):
                bucket = end
                continue
            found = False
            for shard in range(self._shards):
                for item in self._read(keys.reap_partition(self._kind, bucket, shard), now, projection):
                    found = True
                    yield item
            if not found and sealed:
                closed.add(bucket)
            elif not found and now >= end:
                quiet.add(bucket)
            bucket = end
        self._advance(start, closed, quiet)

    def _read(self, partition: str, now: datetime, projection: str | None) -> Iterator[dict[str, Any]]:
        for page in self._db.query_pages(
            IndexName="reap",
            KeyConditionExpression="reap_pk = :pk AND reap_sk < :now",
            ExpressionAttributeValues={":pk": {"S": partition}, ":now": {"S": f"{ts(now)}#"}},
            Limit=self._page_size,
            # What the caller needs of each item (never a task's inline events).
            **({"ProjectionExpression": projection} if projection else {}),
        ):
            yield from page.get("Items", [])

    def _start(self, now: datetime) -> datetime:
        """Where a walk starts: the mark (read from the table the first time, or each time if asked to)."""
        with self._lock:
            if self._mark is not None and not self._reread_mark:
                return self._mark
        durable = read_mark(self._db, self._kind)
        if durable is None:
            durable = self._first_mark(now)
        with self._lock:
            if self._mark is not None and durable < self._mark:  # moved back (a backfill): forget what was read
                self._closed.clear()
                self._quiet.clear()
            if self._mark is None or self._reread_mark or durable > self._mark:
                self._mark = durable
            return self._mark

    def _first_mark(self, now: datetime) -> datetime:
        """A table's first mark (:func:`first_mark`), put at once unless another walker put one first."""
        start = first_mark(self._kind, now, table_created_at(self._db))
        _put_mark(self._db, self._kind, start, "attribute_not_exists(PK)")
        return read_mark(self._db, self._kind) or start

    def _advance(self, start: datetime, closed: set[datetime], quiet: set[datetime]) -> None:
        """After a whole walk: move the mark over the sealed empty buckets that follow it."""
        with self._lock:
            self._closed |= closed
            self._quiet |= quiet
            mark = max(self._mark or start, start)
            while mark in self._closed:
                mark += self._width
            moved = self._mark is None or mark > self._mark
            self._mark = mark
            self._closed = {b for b in self._closed if b > mark}
            self._quiet = {b for b in self._quiet if b >= mark}
        if moved:
            advance_mark(self._db, self._kind, mark)
