"""The DynamoDB event store: one task item per task, carrying its snapshot, its newest events and its lease.

A state change is one conditional write of that one item (``version = :expected``); older events move out into
history items (``HIST#<id>#<n>`` / ``EVT#<seq>``) a batch at a time (see docs/ARCHITECTURE.md, "The commit protocol").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from tqcore.adapters.dynamodb import deadlines, history, keys, leases, progress
from tqcore.adapters.dynamodb.batching import TransactionBatcher
from tqcore.adapters.dynamodb.deadlines import DeadlineWalker
from tqcore.adapters.dynamodb.table import Table
from tqcore.domain.codec import event_from_dict, event_to_dict, task_from_dict, task_to_dict, ts
from tqcore.domain.errors import LeaseHeld, TaskNotFound, TaskTooLarge, TqError, VersionConflict
from tqcore.domain.model import Event, Progress
from tqcore.domain.task import Task
from tqcore.ports import DuplicateRequest, IdempotencyRecord, LeaseRecord, LeaseState
from tqcore.settings import CoreSettings

log = logging.getLogger(__name__)

#: Items per page when walking an index.
PAGE_SIZE = 100
#: A task snapshot must leave room under DynamoDB's 400 KB item limit for its keys and index attributes.
MAX_SNAPSHOT_BYTES = 380_000
#: Events a task item keeps inline at most: a commit that would exceed it moves the inline ones out into history
#: items (one transaction per this many events). An ordinary task (submitted, queued, claimed, succeeded, a few
#: retries) never gets there; the bound keeps the item, which every write is billed by (1 write unit per KB, and
#: again in each index the item is in), small.
INLINE_EVENTS = 16
#: Bytes of inline events a task item keeps at most (same reason).
INLINE_BYTES = 16_384
#: Snapshot and inline events together stay under this (DynamoDB's item limit is 400 KB with names and keys).
ITEM_BYTES = 390_000
#: Attributes of the task item that hold its inline events: the JSON texts oldest first, their count and size.
EVENTS, COUNT, SIZE = "evts", "evn", "evb"
#: What a read of the task (not of its history) fetches: never the inline events.
TASK_PROJECTION = f"PK, doc, {leases.UNTIL}, {progress.PROGRESS}"


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int | float) -> dict[str, str]:
    return {"N": str(value)}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _own_write(reasons: list[dict[str, Any]], task: Task, doc: str) -> bool:
    """Whether a refused commit found its own change already applied: a lone ``UpdateItem`` has no
    ``ClientRequestToken``, so when its answer is lost botocore's retry fails the version condition against the
    write it already made. The item then holds this very version and document (which carries the time of the
    change and its actor: no other writer makes the same one)."""
    current = reasons[0].get("Item") if reasons and reasons[0].get("Code") == "ConditionalCheckFailed" else None
    return (
        current is not None
        and current.get("version", {}).get("N") == str(task.version)
        and current.get("doc", {}).get("S") == doc
    )


def _size(text: str) -> int:
    """What one inline event adds to the item (its UTF-8 bytes and a list element's overhead)."""
    return len(text.encode()) + 1


def _fitting(events: list[tuple[int, str]], count: int, size: int) -> int:
    """How many of the newest ``events`` fit in ``count`` events and ``size`` bytes."""
    kept, used = 0, 0
    for _, text in reversed(events):
        used += _size(text)
        if kept == count or used > size:
            break
        kept += 1
    return kept


class _Update:
    """An ``UpdateExpression`` with its names and values, built attribute by attribute."""

    def __init__(self) -> None:
        self.sets: list[str] = []
        self.removes: list[str] = []
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attr: str) -> str:
        self.names[f"#{attr}"] = attr
        return f"#{attr}"

    def value(self, value: Any) -> str:
        key = f":v{len(self.values)}"
        self.values[key] = value
        return key

    def set(self, attr: str, value: Any) -> None:
        self.sets.append(f"{self.name(attr)} = {self.value(value)}")

    def remove(self, attr: str) -> None:
        self.removes.append(self.name(attr))

    def copy(self) -> _Update:
        """A copy to build a variant on, leaving this one as it is."""
        other = _Update()
        other.sets, other.removes = list(self.sets), list(self.removes)
        other.names, other.values = dict(self.names), dict(self.values)
        return other

    def request(self, table: str, key: dict[str, Any], condition: str) -> dict[str, Any]:
        expression = "SET " + ", ".join(self.sets)
        if self.removes:
            expression += " REMOVE " + ", ".join(self.removes)
        return {
            "TableName": table,
            "Key": key,
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": self.names,
            "ExpressionAttributeValues": self.values,
            # A refused commit hands back the current item: the current task, and the inline events to spill.
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }


class DynamoTaskStore:
    """Tasks in tq's single table (see ``keys`` for the layout)."""

    def __init__(
        self,
        client: Any,
        settings: CoreSettings,
        *,
        page_size: int = PAGE_SIZE,
        on_commit: Callable[[Task, Sequence[Event]], None] | None = None,
        inline_events: int = INLINE_EVENTS,
        batcher: TransactionBatcher | None = None,
    ) -> None:
        self._page_size = page_size
        self._inline_max = inline_events
        #: Told of every committed change (the composition roots count metrics with it).
        self._on_commit = on_commit or (lambda task, events: None)
        self._db = Table(client, settings.table_name)
        self._table = settings.table_name
        self._settings = settings
        #: Shared by this store's threads (each service builds one store per process); tests pass one to watch.
        self._batcher = batcher or TransactionBatcher.from_settings(client, settings)
        #: One walker per kind of ``reap`` deadline, shared by this store's threads (they keep the walk's marks).
        self._walkers = {
            kind: DeadlineWalker(
                self._db,
                kind,
                shards=settings.reap_shards,
                margin=deadlines.MARGINS[kind],
                page_size=page_size,
                reread_mark=kind == keys.SWEEP,
            )
            for kind in (keys.RESEND, keys.LEASE, keys.SWEEP)
        }

    # ----------------------------------------------------------------- writes
    def create(self, task: Task, idempotency: IdempotencyRecord | None = None) -> None:
        """Persist a new task with its events inline: one conditional ``Put`` (with its idempotency record, a
        two-item transaction; events too large for the item go to history items in the same transaction)."""
        self._created(task, idempotency, self._transact(self._create_items(task, idempotency)))

    def create_many(self, new: Sequence[tuple[Task, IdempotencyRecord | None]]) -> list[Exception | None]:
        """:meth:`create` for many tasks, each on its own, sharing ``TransactWriteItems`` (up to 100 items each:
        50 tasks with idempotency keys, 100 without): per task ``None`` or what :meth:`create` would raise."""
        outcomes: list[Exception | None] = [None] * len(new)
        groups: dict[int, list[dict[str, Any]]] = {}
        for n, (task, idempotency) in enumerate(new):
            try:
                groups[n] = self._create_items(task, idempotency)
            except TaskTooLarge as error:
                outcomes[n] = error
        results = self._batcher.transact_many(list(groups.values()))
        for n, result in zip(groups, results, strict=True):
            try:
                if isinstance(result, BaseException):
                    raise result
                self._created(*new[n], result)
            except (TqError, DuplicateRequest) as error:
                outcomes[n] = error
        return outcomes

    def _create_items(self, task: Task, idempotency: IdempotencyRecord | None) -> list[dict[str, Any]]:
        """The transaction items that create ``task``: its item, history items for events that do not fit it,
        and first its idempotency record (whose refusal names the task that holds the key)."""
        doc = self._doc(task)
        pending = self._encoded(task.pending_events)
        inline = _fitting(pending, self._inline_max, self._inline_room(doc))
        spilled, kept = pending[: len(pending) - inline], pending[len(pending) - inline :]
        item = {
            "PK": _s(keys.task_pk(task.id)),
            "SK": _s(keys.SNAPSHOT_SK),
            "doc": _s(doc),
            EVENTS: {"L": [_s(text) for _, text in kept]},
            COUNT: _n(len(kept)),
            SIZE: _n(sum(_size(text) for _, text in kept)),
            **self._state_attributes(task),
            **keys_as_strings(self._index_attributes(task)),
            **leases.attributes(task),
        }
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": item,
                    "ConditionExpression": "attribute_not_exists(PK)",
                    # The item found comes back: a lone put that botocore sent again after its answer was lost
                    # finds its own item there, and the batcher takes it for the write it is.
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            *self._history_puts(task.id, spilled),
        ]
        if idempotency is not None:
            items.insert(0, self._idempotency_put(idempotency))
        return items

    def _created(self, task: Task, idempotency: IdempotencyRecord | None, reasons: list[dict[str, Any]] | None) -> None:
        """What a create's transaction answered: done (observed), ``DuplicateRequest`` or ``VersionConflict``."""
        if reasons is None:
            self._committed(task)
            return
        first = reasons[0]
        if idempotency is not None and first.get("Code") == "ConditionalCheckFailed" and "Item" in first:
            raise DuplicateRequest(self._idem_record(idempotency.group, idempotency.key, first["Item"]))
        raise VersionConflict("the task or its idempotency key is being written concurrently", current=None)

    def commit(self, task: Task, *, lease_expired_before: datetime | None = None) -> None:
        """Append the pending events to the task item and replace its snapshot, if the stored version is the one
        we read: one conditional ``UpdateItem``. The running attempt's lease is set or removed with it; with
        ``lease_expired_before`` (a reclaim), the lease must still be expired then, or ``LeaseHeld`` is raised.

        When the inline events would outgrow their bound, the condition fails and the current item it hands back
        tells which events to move: one transaction then moves them to history items and commits.
        """
        if not task.pending_events:
            return
        expected = task.version - len(task.pending_events)
        doc = self._doc(task)
        pending = self._encoded(task.pending_events)
        added = sum(_size(text) for _, text in pending)
        update = self._state_update(task, doc)
        condition = f"{update.name('version')} = {update.value(_n(expected))}"
        if lease_expired_before is not None:
            condition += f" AND {update.name(leases.UNTIL)} < {update.value(_s(ts(lease_expired_before) or ''))}"
        appended = update.copy()
        events = appended.name(EVENTS)
        appended.sets.append(f"{events} = list_append({events}, {appended.value({'L': [_s(t) for _, t in pending]})})")
        count, size = appended.name(COUNT), appended.name(SIZE)
        appended.sets.append(f"{count} = {count} + {appended.value(_n(len(pending)))}")
        appended.sets.append(f"{size} = {size} + {appended.value(_n(added))}")
        room = (
            f" AND {count} <= {appended.value(_n(self._inline_max - len(pending)))}"
            f" AND {size} <= {appended.value(_n(self._inline_room(doc) - added))}"
        )
        reasons = self._transact([{"Update": appended.request(self._table, self._key(task.id), condition + room)}])
        if reasons is not None and _own_write(reasons, task, doc):
            reasons = None  # botocore sent it again after its answer was lost: the first one was applied
        if reasons is not None:
            current = self._refusal(task, expected, reasons, lease_expired_before)
            # The version and the lease held: the inline events are full. Move them out, with this commit.
            inline = [value["S"] for value in current.get(EVENTS, {}).get("L", [])]
            old = list(zip(range(expected - len(inline) + 1, expected + 1), inline, strict=True))
            kept = _fitting(pending, self._inline_max, self._inline_room(doc))
            spilled = old + pending[: len(pending) - kept]
            update.set(EVENTS, {"L": [_s(text) for _, text in pending[len(pending) - kept :]]})
            update.set(COUNT, _n(kept))
            update.set(SIZE, _n(sum(_size(text) for _, text in pending[len(pending) - kept :])))
            items = [
                {"Update": update.request(self._table, self._key(task.id), condition)},
                *self._history_puts(task.id, spilled),
            ]
            reasons = self._transact(items)
            if reasons is not None:
                self._refusal(task, expected, reasons, lease_expired_before)
                raise VersionConflict(f"task {task.id}'s history was written concurrently", current=None)
        self._committed(task)

    def _refusal(
        self, task: Task, expected: int, reasons: list[dict[str, Any]], lease_expired_before: datetime | None
    ) -> dict[str, Any]:
        """Raise what a refused commit means, unless only the room for inline events ran out: then the current
        item (which the refusal handed back) is returned."""
        first = reasons[0]
        current: dict[str, Any] | None = first.get("Item") if first.get("Code") == "ConditionalCheckFailed" else None
        if current is None:
            raise VersionConflict(f"task {task.id} is being written concurrently", current=None)
        if int(current.get("version", {}).get("N", "-1")) != expected:
            raise VersionConflict(
                f"task {task.id} changed since version {expected}", current=self._task_from_item(current)
            )
        if lease_expired_before is not None and not leases.expired_before(current, lease_expired_before):
            raise LeaseHeld(f"the lease of task {task.id} was extended meanwhile")
        return current

    def _committed(self, task: Task) -> None:
        try:
            self._on_commit(task, task.pending_events)
        except Exception:  # the change is committed: an observer (metrics) failing must not make it look failed
            log.exception("the commit observer failed", extra={"task_id": task.id})

    def extend_lease(self, task_id: str, claim_seq: int, until: datetime) -> LeaseState:
        """Move the lease of claim ``claim_seq`` to ``until`` (one ``UpdateItem`` of the task item, no new
        version); ``LOST`` if that claim no longer holds it, ``CANCEL_REQUESTED`` if the task's cancel was
        requested meanwhile (a second ``UpdateItem``, once per cancelled attempt)."""
        for unless_cancelled, state in ((True, LeaseState.HELD), (False, LeaseState.CANCEL_REQUESTED)):
            request = leases.extend_request(
                self._table, task_id, claim_seq, until, self._settings.reap_shards, unless_cancelled=unless_cancelled
            )
            if self._db.conditional("update_item", **request) is not None:
                return state
        return LeaseState.LOST

    def report_progress(self, task_id: str, claim_seq: int, report: Progress) -> bool:
        """Set the running attempt's progress (one conditional ``UpdateItem``, no new version, no event); False if
        claim ``claim_seq`` no longer runs the task (its report is dropped)."""
        request = progress.write_request(self._table, task_id, claim_seq, report)
        return self._db.conditional("update_item", **request) is not None

    def lease_expired(self, now: datetime) -> Iterator[LeaseRecord]:
        """Leases that ran out before ``now``, the oldest deadlines first (by bucket; see ``deadlines``)."""
        for item in self._walkers[keys.LEASE].walk(now, projection=leases.RECORD_PROJECTION):
            try:
                yield leases.record_from_item(item)
            except (KeyError, ValueError, TypeError, AssertionError):
                log.error("skipping an undecodable lease of %s", item.get("PK"), exc_info=True)

    def _transact(self, items: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
        """Write ``items`` atomically (shared with concurrent writes, ``batching``); the cancellation reasons if a
        condition failed, ``None`` on success."""
        return self._batcher.transact(items)

    # --------------------------------------------------------- item building
    def _key(self, task_id: str) -> dict[str, Any]:
        return {"PK": _s(keys.task_pk(task_id)), "SK": _s(keys.SNAPSHOT_SK)}

    def _doc(self, task: Task) -> str:
        doc = _dumps(task_to_dict(task))
        if len(doc.encode()) > MAX_SNAPSHOT_BYTES:
            raise TaskTooLarge(
                f"task {task.id} would be {len(doc.encode())} bytes; a task item holds at most {MAX_SNAPSHOT_BYTES}"
            )
        return doc

    def _inline_room(self, doc: str) -> int:
        """Bytes of inline events an item with this ``doc`` may hold."""
        return min(INLINE_BYTES, ITEM_BYTES - len(doc.encode()))

    @staticmethod
    def _encoded(events: Sequence[Event]) -> list[tuple[int, str]]:
        return [(event.seq, _dumps(event_to_dict(event))) for event in events]

    def _state_attributes(self, task: Task) -> dict[str, Any]:
        """The task item's attributes that follow the snapshot (``None``: the state has none)."""
        attrs: dict[str, Any] = {
            "version": _n(task.version),
            "status": _s(task.status.value),
            "attempts": _n(task.attempts),
            leases.CANCEL: {"BOOL": task.cancel_requested},
        }
        if task.worker is not None:
            attrs["worker"] = _s(task.worker)
        if task.status.is_terminal:
            # An ended task goes with its history (a redrive ends the TTL: the next commit removes it).
            attrs[keys.TTL_ATTRIBUTE] = _n(self._forget_at(task.finished_at or task.updated_at or task.created_at))
        return attrs

    def _index_attributes(self, task: Task) -> dict[str, str]:
        return keys.index_attributes(
            task,
            due_shards=self._settings.due_shards,
            reap_shards=self._settings.reap_shards,
            resend_after_s=self._settings.resend_after_s,
        )

    def _state_update(self, task: Task, doc: str) -> _Update:
        """SET what the new state has, REMOVE what it no longer has; the lease and its ``reap`` keys only when
        this commit claims or ends the attempt (a heartbeat may have moved them since the task was read)."""
        update = _Update()
        update.set("doc", _s(doc))
        present = {**self._state_attributes(task), **keys_as_strings(self._index_attributes(task))}
        optional = {"worker", keys.TTL_ATTRIBUTE, *(a for pair in keys.INDEXES.values() for a in pair)}
        lease = leases.attributes(task)
        if leases.keeps_lease(task):
            optional -= {"reap_pk", "reap_sk"}
            present.pop("reap_pk", None)
            present.pop("reap_sk", None)
        else:
            present.update(lease)
            optional |= {leases.CLAIM, leases.UNTIL}
        if leases.claims(task):  # a new attempt starts without the last one's progress
            update.remove(progress.PROGRESS)
        for name, value in present.items():
            update.set(name, value)
        for name in sorted(optional - present.keys()):
            update.remove(name)
        return update

    def _history_puts(self, task_id: str, events: list[tuple[int, str]]) -> list[dict[str, Any]]:
        """History items for events moved out of (or never fitting in) the task item. Unconditional: the task
        item's version condition in the same transaction proves nobody moved them first."""
        return [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        "PK": _s(keys.event_pk(task_id, seq)),
                        "SK": _s(keys.event_sk(seq)),
                        "doc": _s(text),
                        keys.TTL_ATTRIBUTE: _n(self._forget_at(event_from_dict(json.loads(text)).at)),
                    },
                }
            }
            for seq, text in events
        ]

    def _idempotency_put(self, idempotency: IdempotencyRecord) -> dict[str, Any]:
        now = int(time.time())
        return {
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
        }

    def _forget_at(self, at: datetime) -> int:
        """When DynamoDB's TTL may delete history written at ``at`` (epoch seconds)."""
        return int(at.timestamp()) + self._settings.history_retention_days * 86400

    # ------------------------------------------------------------------ reads
    def get(self, task_id: str) -> Task:
        """The current snapshot with its lease's current expiry (one strongly consistent ``GetItem`` that
        leaves the inline events out)."""
        response = self._db.call(
            "get_item",
            TableName=self._table,
            Key=self._key(task_id),
            ConsistentRead=True,
            ProjectionExpression=TASK_PROJECTION,
        )
        item = response.get("Item")
        if item is None:
            raise TaskNotFound(f"no task {task_id}", task_id=task_id)
        return self._task_from_item(item)

    def events(self, task_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        """The task's events after ``after_seq``, oldest first, at most ``limit`` (``None``: all): history items
        (bounded key-range queries, ``history``), then the events inline in the task item."""
        inline, first_inline = self._inline_events(task_id)
        older_than = first_inline if first_inline is not None else history.MAX_SEQ + 1
        events: list[Event] = []
        if after_seq + 1 < older_than:
            retention = self._settings.history_retention_days
            # A spill between the two reads moves inline events into history: they are in ``inline`` already.
            events = [
                e for e in history.events_after(self._db, task_id, after_seq, limit, retention) if e.seq < older_than
            ]
        missing = None if limit is None else limit - len(events)
        newer = [event for event in inline if event.seq > after_seq]
        return events + (newer if missing is None else newer[: max(missing, 0)])

    def events_before(self, task_id: str, before_seq: int, limit: int) -> list[Event]:
        """At most ``limit`` of the task's events before ``before_seq``, newest first: from the task item's inline
        events, then from history items."""
        inline, first_inline = self._inline_events(task_id)
        events = [event for event in reversed(inline) if event.seq < before_seq][:limit]
        if len(events) < limit:
            older_than = min(before_seq, first_inline) if first_inline is not None else before_seq
            events += history.events_before(self._db, task_id, older_than, limit - len(events))
        return events

    def _inline_events(self, task_id: str) -> tuple[list[Event], int | None]:
        """The events inline in the task item and the seq of the oldest of them (``None``: no task item).

        Read before the history items: an event moved out in between is then still in this list, never missed."""
        response = self._db.call(
            "get_item",
            TableName=self._table,
            Key=self._key(task_id),
            ConsistentRead=True,
            ProjectionExpression=f"version, {EVENTS}",
        )
        item = response.get("Item")
        if item is None:
            return [], None
        texts = [value["S"] for value in item.get(EVENTS, {}).get("L", [])]
        return [event_from_dict(json.loads(text)) for text in texts], int(item["version"]["N"]) - len(texts) + 1

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

    def unclaimed(self, now: datetime) -> Iterator[Task]:
        """Queued tasks still unclaimed past their re-send deadline, before ``now``, the oldest deadlines first."""
        return self._tasks_of(self._walkers[keys.RESEND].walk(now, projection=TASK_PROJECTION), "reap")

    def due(self, since: datetime, until: datetime, *, part: tuple[int, int] = (0, 1)) -> Iterator[Task]:
        """Tasks filed in the ``due`` index at times from ``since`` to before ``until``, oldest first per minute
        bucket and shard; with ``part = (k, n)``, only the shards ``s`` with ``s % n == k``."""
        k, n = part
        buckets = keys.minute_buckets(since, until)
        for bucket in buckets:
            for shard in range(k, self._settings.due_shards, n):
                items = self._db.query_pages(
                    IndexName="due",
                    KeyConditionExpression="due_pk = :pk AND due_sk BETWEEN :since AND :until",
                    ExpressionAttributeValues={
                        ":pk": _s(f"DUE#{bucket}#{shard}"),
                        ":since": _s(f"{ts(since)}"),
                        ":until": _s(f"{ts(until)}#"),
                    },
                    Limit=self._page_size,
                    ProjectionExpression=TASK_PROJECTION,
                )
                yield from self._tasks_of((item for page in items for item in page.get("Items", [])), "due")

    def overdue(self, before: datetime) -> Iterator[Task]:
        """Due tasks that are not queued, due before ``before`` however long ago (the scheduler's sweep: the
        sweep's deadline buckets from their mark, see ``deadlines``)."""
        return self._tasks_of(self._walkers[keys.SWEEP].walk(before, projection=TASK_PROJECTION), "reap")

    def _tasks_of(self, items: Iterator[dict[str, Any]], index: str) -> Iterator[Task]:
        """The tasks of index items. An item that cannot be decoded is logged and skipped: one bad item must never
        stop the scheduler or the reaper."""
        for item in items:
            try:
                yield self._task_from_item(item)
            except (KeyError, ValueError, TypeError):
                log.error("skipping an undecodable item %s in index %s", item.get("PK"), index, exc_info=True)

    # -------------------------------------------------------------- internals
    @staticmethod
    def _task_from_item(item: dict[str, Any]) -> Task:
        """The task of a task item, with the live lease expiry its heartbeats keep in the item, and its progress."""
        return progress.overlay(leases.overlay(task_from_dict(json.loads(item["doc"]["S"])), item), item)

    @staticmethod
    def _idem_record(group: str, key: str, item: dict[str, Any]) -> IdempotencyRecord:
        return IdempotencyRecord(group, key, item["fingerprint"]["S"], item["task_id"]["S"])


def keys_as_strings(attrs: dict[str, str]) -> dict[str, Any]:
    """Index key attributes as DynamoDB string values."""
    return {name: _s(value) for name, value in attrs.items()}
