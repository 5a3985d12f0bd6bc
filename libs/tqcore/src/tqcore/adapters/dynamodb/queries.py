"""Read-side listings from tq's table indexes (the ``TaskQueries`` port)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from tqcore.adapters.dynamodb import deadlines, keys, leases, progress
from tqcore.adapters.dynamodb.table import Table
from tqcore.documents import ListedTask
from tqcore.domain.codec import task_from_dict
from tqcore.domain.model import Priority, Status
from tqcore.domain.task import Task
from tqcore.errors import StoreUnavailable
from tqcore.queries import TaskStamp
from tqcore.settings import CoreSettings

log = logging.getLogger(__name__)

#: Index items per query page when walking a group's ids.
PAGE_SIZE = 100
#: ``BatchGetItem`` takes at most 100 keys.
BATCH_GET_KEYS = 100
#: Dead letters counted per group at most (the gauge says "at least this many" beyond).
COUNT_CAP = 10_000
#: Queued tasks read per re-send shard to find the longest-waiting one.
OLDEST_SAMPLE = 100
#: What a stamp reads of a task item: its top-level state attributes, never the document or the events (``status`` is
#: a reserved word in DynamoDB's expressions, hence the name placeholder).
STAMP_PROJECTION = f"PK, version, #status, {progress.PROGRESS}"
#: Pauses before asking again for keys a batch read left unprocessed.
BATCH_GET_PAUSES_S = (0.05, 0.2, 0.5, 1.0, 2.0)


class DynamoTaskQueries:
    """Listings served by the table's global secondary indexes (eventually consistent, like any GSI)."""

    def __init__(self, client: Any, settings: CoreSettings, *, page_size: int = PAGE_SIZE) -> None:
        self._db = Table(client, settings.table_name)
        self._page_size = page_size
        self._reap_shards = settings.reap_shards
        self._resend_after_s = settings.resend_after_s

    def dead_letter_count(self, group: str, cap: int = COUNT_CAP) -> int:
        """How many failed tasks ``group`` has in the ``dlq`` index, counting up to ``cap``."""
        return self._db.count(
            cap,
            IndexName="dlq",
            KeyConditionExpression="dlq_pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"DLQ#{group}"}},
        )

    def oldest_queued(self, sample: int = OLDEST_SAMPLE) -> dict[tuple[str, Priority], datetime]:
        """When the longest-waiting ``queued`` task of each pool and priority was queued (queues with none left out).

        Queued tasks sit in the ``reap`` index by re-send deadline, which is ``queued_at`` plus a wait that
        doubles with each re-send, in time buckets: the walk reads the buckets from the re-send mark on, up to
        ``sample`` items of each shard, and stops after the first bucket that holds any. Those hold the oldest
        unless a much re-sent task's deadline lies beyond that bucket (then this is a lower bound).
        """
        oldest: dict[tuple[str, Priority], datetime] = {}
        now = datetime.now(UTC)
        bucket = deadlines.read_mark(self._db, keys.RESEND) or keys.bucket_of(keys.RESEND, now)
        # No re-send deadline lies further ahead than the longest wait (``keys.resend_at``).
        last = keys.bucket_of(keys.RESEND, now + timedelta(seconds=930 + self._resend_after_s))
        while bucket <= last and not oldest:
            for shard in range(self._reap_shards):
                page = self._db.call(
                    "query",
                    TableName=self._db.name,
                    IndexName="reap",
                    KeyConditionExpression="reap_pk = :pk",
                    ExpressionAttributeValues={":pk": {"S": keys.reap_partition(keys.RESEND, bucket, shard)}},
                    ProjectionExpression="doc",
                    Limit=sample,
                )
                for item in page.get("Items", []):
                    with contextlib.suppress(KeyError, ValueError, TypeError):
                        task = task_from_dict(json.loads(item["doc"]["S"]))
                        if task.status is Status.QUEUED and task.queued_at is not None:
                            queue = (task.pool, task.priority)
                            oldest[queue] = min(oldest.get(queue, task.queued_at), task.queued_at)
            bucket += keys.BUCKET_WIDTH[keys.RESEND]
        return oldest

    def dead_letter_positions(self, group: str, before: str | None = None) -> Iterator[tuple[str, str]]:
        """Positions from the sparse ``dlq`` index, newest first, a query page of keys at a time."""
        # Only the sort key comes back (``<finished_at>#<id>``): the documents are read with the page's batch.
        for item in self._newest("dlq", f"DLQ#{group}", before, page_size=self._page_size, projection="dlq_sk"):
            position = item["dlq_sk"]["S"]
            yield position, position.partition("#")[2]

    def newest_ids(self, group: str, before: str | None = None) -> Iterator[str]:
        """Ids from the keys-only ``by_group`` index, newest first, a query page at a time."""
        for item in self._newest("by_group", keys.group_pk(group), before, page_size=self._page_size):
            yield item["grp_sk"]["S"]

    def scheduled_ids(self, group: str, before: str | None = None) -> Iterator[str]:
        """Ids from the sparse keys-only ``sched`` index, newest first, a query page at a time."""
        for item in self._newest("sched", keys.schedule_pk(group), before, page_size=self._page_size):
            yield item["sch_sk"]["S"]

    def tasks(self, ids: Sequence[str]) -> list[Task]:
        """Snapshots by ``BatchGetItem`` (strongly consistent, 100 keys a call), in the order of ``ids``, each with
        its live lease expiry (heartbeats move it in the item without a new snapshot)."""
        found: dict[str, Task] = {}
        for item in self._snapshots(ids):
            try:
                task = progress.overlay(leases.overlay(task_from_dict(json.loads(item["doc"]["S"])), item), item)
            except (KeyError, ValueError, TypeError):
                log.error("skipping an undecodable task %s", item.get("PK"), exc_info=True)
                continue
            found[task.id] = task
        return [found[i] for i in ids if i in found]

    def listed(self, ids: Sequence[str]) -> list[ListedTask]:
        """:meth:`tasks` as stored documents: payloads and results are never parsed."""
        found: dict[str, ListedTask] = {}
        for item in self._snapshots(ids):
            try:
                task = ListedTask.from_doc(item["doc"]["S"])
                with contextlib.suppress(KeyError, ValueError, TypeError, AssertionError):
                    if task.status is Status.RUNNING:
                        lease = leases.record_from_item(item)
                        task = task.with_lease(lease.claim_seq, lease.expires_at)
                task = progress.overlay_listed(task, item)
            except (KeyError, ValueError):
                log.error("skipping an undecodable task %s", item.get("PK"), exc_info=True)
                continue
            found[task.id] = task
        return [found[i] for i in ids if i in found]

    def stamps(self, ids: Sequence[str]) -> dict[str, TaskStamp]:
        """Stamps by ``BatchGetItem`` (100 keys a call) of three small attributes of each task item, eventually
        consistent: half the read units of a consistent read, and a watcher looks again a moment later anyway."""
        found: dict[str, TaskStamp] = {}
        read = {"ConsistentRead": False, "ExpressionAttributeNames": {"#status": "status"}}
        for item in self._snapshots(ids, STAMP_PROJECTION, read):
            try:
                found[keys.task_id_of(item["PK"]["S"])] = TaskStamp(
                    int(item["version"]["N"]), Status(item["status"]["S"]), progress.of_item(item)
                )
            except (KeyError, ValueError):
                log.error("skipping an undecodable task %s", item.get("PK"), exc_info=True)
        return found

    def _snapshots(
        self,
        ids: Sequence[str],
        projection: str = f"doc, {leases.RECORD_PROJECTION}, {progress.PROGRESS}",
        read: dict[str, Any] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The task items of ``ids`` (those that exist), 100 keys a call: by default the snapshot, the lease and the
        progress, never the inline events; ``read`` overrides the request's options (consistent by default)."""
        for offset in range(0, len(ids), BATCH_GET_KEYS):
            wanted = [
                {"PK": {"S": keys.task_pk(i)}, "SK": {"S": keys.SNAPSHOT_SK}}
                for i in dict.fromkeys(ids[offset : offset + BATCH_GET_KEYS])
            ]
            yield from self._batch_get(wanted, projection, read or {})

    def _batch_get(
        self, wanted: list[dict[str, Any]], projection: str, read: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        """Every item of ``wanted``, asking again for the keys DynamoDB left unprocessed (throttling)."""
        for pause_s in BATCH_GET_PAUSES_S:
            answer = self._db.call(
                "batch_get_item",
                RequestItems={
                    self._db.name: {"Keys": wanted, "ConsistentRead": True, "ProjectionExpression": projection, **read}
                },
            )
            yield from answer.get("Responses", {}).get(self._db.name, [])
            wanted = answer.get("UnprocessedKeys", {}).get(self._db.name, {}).get("Keys", [])
            if not wanted:
                return
            time.sleep(pause_s)
        raise StoreUnavailable(f"DynamoDB left {len(wanted)} keys of a batch read unprocessed")

    def _newest(
        self, index: str, partition: str, before: str | None, *, page_size: int, projection: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Items of one index partition, newest first (sort keys before ``before`` only), a query page at a time
        as the caller consumes them."""
        pk, sk = keys.INDEXES[index]
        condition = f"{pk} = :pk"
        values = {":pk": {"S": partition}}
        if before is not None:
            condition += f" AND {sk} < :before"
            values[":before"] = {"S": before}
        for page in self._db.query_pages(
            IndexName=index,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
            Limit=page_size,
            **({"ProjectionExpression": projection} if projection else {}),
        ):
            yield from page.get("Items", [])
