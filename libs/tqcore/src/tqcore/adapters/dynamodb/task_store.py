"""The DynamoDB event store: snapshot + events in one ``TransactWriteItems`` conditioned on ``version``."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tqcore.adapters.dynamodb import history, keys, leases
from tqcore.adapters.dynamodb.table import UNAVAILABLE_CODES, Table, unavailable
from tqcore.domain.codec import event_to_dict, task_from_dict, task_to_dict, ts
from tqcore.domain.errors import LeaseHeld, TaskNotFound, TaskTooLarge, VersionConflict
from tqcore.domain.model import Event, Status
from tqcore.domain.task import Task
from tqcore.ports import DuplicateRequest, IdempotencyRecord, LeaseRecord, LeaseState
from tqcore.settings import CoreSettings

log = logging.getLogger(__name__)

#: Items per page when walking an index.
PAGE_SIZE = 100
#: A task snapshot must leave room under DynamoDB's 400 KB item limit for its keys and index attributes.
MAX_SNAPSHOT_BYTES = 380_000


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class DynamoTaskStore:
    """Tasks in tq's single table (see ``keys`` for the layout)."""

    def __init__(
        self,
        client: Any,
        settings: CoreSettings,
        *,
        page_size: int = PAGE_SIZE,
        on_commit: Callable[[Task, Sequence[Event]], None] | None = None,
    ) -> None:
        self._page_size = page_size
        #: Told of every committed change (the composition roots count metrics with it).
        self._on_commit = on_commit or (lambda task, events: None)
        self._db = Table(client, settings.table_name)
        self._table = settings.table_name
        self._settings = settings

    # ----------------------------------------------------------------- writes
    def create(self, task: Task, idempotency: IdempotencyRecord | None = None) -> None:
        """Persist a new task, its events and its idempotency record in one transaction."""
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._snapshot_item(task),
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            }
        ]
        if idempotency is not None:
            now = int(time.time())
            items.insert(
                0,
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {
                            "PK": _s(keys.idem_pk(idempotency.group, idempotency.key)),
                            "SK": _s(keys.IDEM_SK),
                            "task_id": _s(idempotency.task_id),
                            "fingerprint": _s(idempotency.fingerprint),
                            keys.TTL_ATTRIBUTE: _n(now + self._settings.idempotency_ttl_s),
                        },
                        # TTL deletion lags, so an expired record counts as absent.
                        "ConditionExpression": "attribute_not_exists(PK) OR #ttl < :now",
                        "ExpressionAttributeNames": {"#ttl": keys.TTL_ATTRIBUTE},
                        "ExpressionAttributeValues": {":now": _n(now)},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            )
        items += self._event_puts(task)
        reasons = self._transact(items)
        if reasons is None:
            self._committed(task)
            return
        first = reasons[0]
        if idempotency is not None and first.get("Code") == "ConditionalCheckFailed" and "Item" in first:
            raise DuplicateRequest(self._idem_record(idempotency.group, idempotency.key, first["Item"]))
        raise VersionConflict("the task or its idempotency key is being written concurrently", current=None)

    def commit(self, task: Task, *, lease_expired_before: datetime | None = None) -> None:
        """Append the pending events and replace the snapshot, if the stored version is the one we read.

        The running attempt's lease item is put or deleted in the same transaction. With
        ``lease_expired_before`` (a reclaim), the lease must still be expired then, or ``LeaseHeld`` is raised.
        """
        expected = task.version - len(task.pending_events)
        if not task.pending_events:
            return
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": self._snapshot_item(task),
                    "ConditionExpression": "version = :expected",
                    "ExpressionAttributeValues": {":expected": _n(expected)},
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            *self._event_puts(task),
        ]
        lease = leases.lease_ops(
            self._table, task, reap_shards=self._settings.reap_shards, expired_before=lease_expired_before
        )
        reasons = self._transact(items + lease)
        if reasons is None:
            self._committed(task)
            return
        first = reasons[0]
        if first.get("Code") != "ConditionalCheckFailed" and any(
            r.get("Code") == "ConditionalCheckFailed" for r in reasons[len(items) :]
        ):
            raise LeaseHeld(f"the lease of task {task.id} was extended meanwhile")
        current = self._task_from_item(first["Item"]) if "Item" in first else None
        raise VersionConflict(f"task {task.id} changed since version {expected}", current=current)

    def _committed(self, task: Task) -> None:
        try:
            self._on_commit(task, task.pending_events)
        except Exception:  # the change is committed: an observer (metrics) failing must not make it look failed
            log.exception("the commit observer failed", extra={"task_id": task.id})

    def extend_lease(self, task_id: str, claim_seq: int, until: datetime) -> LeaseState:
        """Move the lease of claim ``claim_seq`` to ``until`` (one ``UpdateItem``); ``LOST`` if that claim no
        longer holds it, ``CANCEL_REQUESTED`` if the task's cancel was requested meanwhile."""
        request = leases.extend_request(self._table, task_id, claim_seq, until, self._settings.reap_shards)
        response = self._db.conditional("update_item", **request)
        if response is None:
            return LeaseState.LOST
        return leases.state_after_extend(response.get("Attributes", {}))

    def lease_expired(self, shard: int, now: datetime) -> Iterator[LeaseRecord]:
        """Leases of one shard that ran out before ``now``, oldest first."""
        for item in self._walk_index("reap", keys.reap_partition(Status.RUNNING, shard), now):
            try:
                yield leases.record_from_item(item)
            except (KeyError, ValueError, TypeError):
                log.error("skipping an undecodable lease item %s", item.get("PK"), exc_info=True)

    def _transact(self, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Run a transaction; the cancellation reasons if a condition failed, ``None`` on success."""
        try:
            # One token per logical commit: botocore's retries of this call resend it, so a commit whose
            # response was lost is not applied twice (nor refused by its own version condition).
            self._db.client.transact_write_items(TransactItems=items, ClientRequestToken=str(uuid.uuid4()))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "TransactionCanceledException":
                reasons: list[Any] = error.response.get("CancellationReasons", [])
                if any(r.get("Code") in ("ConditionalCheckFailed", "TransactionConflict") for r in reasons):
                    return reasons
                if any(r.get("Code") in UNAVAILABLE_CODES for r in reasons):
                    raise unavailable(error) from error
            if code in UNAVAILABLE_CODES:
                raise unavailable(error) from error
            raise
        except BotoCoreError as error:
            raise unavailable(error) from error
        return None

    def _event_puts(self, task: Task) -> list[dict[str, Any]]:
        return [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "PK": _s(keys.event_pk(task.id, event.seq)),
                        "SK": _s(keys.event_sk(event.seq)),
                        "doc": _s(_dumps(event_to_dict(event))),
                        keys.TTL_ATTRIBUTE: _n(self._forget_at(event.at)),
                    },
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            }
            for event in task.pending_events
        ]

    def _snapshot_item(self, task: Task) -> dict[str, Any]:
        doc = _dumps(task_to_dict(task))
        if len(doc.encode()) > MAX_SNAPSHOT_BYTES:
            raise TaskTooLarge(
                f"task {task.id} would be {len(doc.encode())} bytes; a task item holds at most {MAX_SNAPSHOT_BYTES}"
            )
        item: dict[str, Any] = {
            "PK": _s(keys.task_pk(task.id)),
            "SK": _s(keys.SNAPSHOT_SK),
            "version": _n(task.version),
            "status": _s(task.status.value),
            "attempts": _n(task.attempts),
            "doc": _s(doc),
        }
        if task.worker is not None:
            item["worker"] = _s(task.worker)
        if task.status.is_terminal:
            # An ended task goes with its history (a redrive ends the TTL: the next Put has none).
            item[keys.TTL_ATTRIBUTE] = _n(self._forget_at(task.finished_at or task.updated_at or task.created_at))
        attrs = keys.index_attributes(
            task,
            due_shards=self._settings.due_shards,
            reap_shards=self._settings.reap_shards,
            resend_after_s=self._settings.resend_after_s,
        )
        item.update({name: _s(value) for name, value in attrs.items()})
        return item

    def _forget_at(self, at: datetime) -> int:
        """When DynamoDB's TTL may delete history written at ``at`` (epoch seconds)."""
        return int(at.timestamp()) + self._settings.history_retention_days * 86400

    # ------------------------------------------------------------------ reads
    def get(self, task_id: str) -> Task:
        """The current snapshot with its lease's current expiry (one strongly consistent query)."""
        response = self._db.call(
            "query",
            TableName=self._table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :sk)",
            ExpressionAttributeValues={":pk": _s(keys.task_pk(task_id)), ":sk": _s(keys.SNAPSHOT_SK)},
            ConsistentRead=True,
        )
        by_sk = {item["SK"]["S"]: item for item in response.get("Items", [])}
        if keys.SNAPSHOT_SK not in by_sk:
            raise TaskNotFound(f"no task {task_id}", task_id=task_id)
        lease = by_sk.get(keys.LEASE_SK)
        return leases.overlay(
            self._task_from_item(by_sk[keys.SNAPSHOT_SK]), leases.record_from_item(lease) if lease else None
        )

    def events(self, task_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        """The task's events after ``after_seq``, oldest first, at most ``limit`` (``None``: all)."""
        return history.events_after(self._db, task_id, after_seq, limit, self._settings.history_retention_days)

    def events_before(self, task_id: str, before_seq: int, limit: int) -> list[Event]:
        """At most ``limit`` of the task's events before ``before_seq``, newest first."""
        return history.events_before(self._db, task_id, before_seq, limit)

    def idempotency_record(self, group: str, key: str) -> IdempotencyRecord | None:
        """The live (unexpired) record for a key."""
        response = self._db.call(
            "get_item",
            TableName=self._table,
            Key={"PK": _s(keys.idem_pk(group, key)), "SK": _s(keys.IDEM_SK)},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None or int(item[keys.TTL_ATTRIBUTE]["N"]) < int(time.time()):
            return None
        return self._idem_record(group, key, item)

    def unclaimed(self, shard: int, now: datetime) -> Iterator[Task]:
        """Queued tasks of one shard still unclaimed past their re-send deadline, oldest first."""
        return self._due_in_index("reap", keys.reap_partition(Status.QUEUED, shard), now)

    def due(self, bucket: str, shard: int, now: datetime) -> Iterator[Task]:
        """Scheduled or retrying tasks of one minute bucket and shard whose time has come, oldest first."""
        return self._due_in_index("due", f"DUE#{bucket}#{shard}", now)

    def overdue(self, shard: int, before: datetime) -> Iterator[Task]:
        """Due tasks that are not queued, of one sweep shard, due before ``before`` however long ago, oldest
        first (the scheduler's sweep: one paged query per shard, no minute buckets)."""
        return self._due_in_index("reap", keys.sweep_partition(shard), before)

    def _due_in_index(self, index: str, partition: str, now: datetime) -> Iterator[Task]:
        """Tasks in one partition of a time-sorted index whose time (the sort key's prefix) is before ``now``.
        An item that cannot be decoded is logged and skipped: one bad item must never stop the scheduler or
        the reaper."""
        for item in self._walk_index(index, partition, now):
            try:
                yield self._task_from_item(item)
            except (KeyError, ValueError, TypeError):
                log.error("skipping an undecodable item %s in index %s", item.get("PK"), index, exc_info=True)

    def _walk_index(self, index: str, partition: str, now: datetime) -> Iterator[dict[str, Any]]:
        """Items of one partition of a time-sorted index whose sort key's time is before ``now``, paged."""
        pk, sk = keys.INDEXES[index]
        for page in self._db.query_pages(
            IndexName=index,
            KeyConditionExpression=f"{pk} = :pk AND {sk} < :now",
            ExpressionAttributeValues={":pk": _s(partition), ":now": _s(f"{ts(now)}#")},
            Limit=self._page_size,
        ):
            yield from page.get("Items", [])

    # -------------------------------------------------------------- internals
    @staticmethod
    def _task_from_item(item: dict[str, Any]) -> Task:
        return task_from_dict(json.loads(item["doc"]["S"]))

    @staticmethod
    def _idem_record(group: str, key: str, item: dict[str, Any]) -> IdempotencyRecord:
        return IdempotencyRecord(group, key, item["fingerprint"]["S"], item["task_id"]["S"])
