"""Group commit of the task store's writes: concurrent groups share one ``TransactWriteItems``.

A *group* is what one commit writes atomically: a list of ``TransactWriteItems`` items (``{"Put": ...}``,
``{"Update": ...}``, ``{"Delete": ...}``, ``{"ConditionCheck": ...}``). :meth:`TransactionBatcher.transact` keeps
the contract the store had with its own transaction: ``None`` once the group is written, or the group's
cancellation reasons (one per item, in its order, with ``Item`` where the item asked for ``ALL_OLD``) when a
condition failed or the group met a concurrent transaction (``TransactionConflict``); ``StoreUnavailable`` on
throttling and connection failures.

A flush is one ``TransactWriteItems`` of at most 100 items and about 3.5 MB, never two operations on one key
(the later group waits for the next flush), with a fresh ``ClientRequestToken``. When it is cancelled, the
reasons say which items failed: their groups get their reasons, and the others are sent again at once in a new
transaction without them. A flush of a single one-item group is the plain call (``PutItem``, ``UpdateItem`` or
``DeleteItem`` with the same condition), which costs half the write units of a transactional write on AWS; its
``ConditionalCheckFailedException`` becomes the same one-reason list. Nothing returns before DynamoDB answered.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tqcore.adapters.dynamodb.table import UNAVAILABLE_CODES, Table, unavailable
from tqcore.adapters.group_commit import GroupCommit, Pending
from tqcore.errors import StoreUnavailable
from tqcore.settings import CoreSettings

#: DynamoDB's limit on a transaction's items.
MAX_ITEMS = 100
#: DynamoDB refuses a transaction whose items add up to more than 4 MB; the estimate counts what the requests
#: carry, so keep a margin (an update's stored item may be larger: a refused batch is re-sent group by group).
MAX_BYTES = 3_500_000
#: The table's key attributes (how a ``Put`` names its item).
KEY_ATTRIBUTES = ("PK", "SK")
#: Reason codes that leave the decision to the group's writer (a version conflict, a taken key).
CONFLICT_CODES = frozenset({"ConditionalCheckFailed", "TransactionConflict"})
#: Plain calls for a lone item, by its transaction item kind.
SINGLE_CALLS = {"Put": "put_item", "Update": "update_item", "Delete": "delete_item"}

Reasons = list[dict[str, Any]]


@dataclass(frozen=True)
class Group:
    """One caller's items, with what a flush needs to place them: their keys and estimated size."""

    items: list[dict[str, Any]]
    keys: frozenset[tuple[str, ...]]
    size: int

    @classmethod
    def of(cls, items: list[dict[str, Any]]) -> Group:
        """The group of ``items``."""
        return cls(items, frozenset(_key(item) for item in items), sum(_size(item) for item in items))


class TransactionBatcher:
    """The store's writes, shared by all threads of a process (see the module's docstring)."""

    def __init__(self, table: Table, *, max_inflight: int = 2, linger_s: float = 0.0) -> None:
        self._table = table
        self._commits: GroupCommit[Group] = GroupCommit(
            self._send, _select, max_inflight=max_inflight, linger_s=linger_s
        )

    @classmethod
    def from_settings(cls, client: Any, settings: CoreSettings) -> TransactionBatcher:
        """A batcher on the settings' table with their ``write_*`` knobs."""
        return cls(
            Table(client, settings.table_name),
            max_inflight=settings.write_max_inflight,
            linger_s=settings.write_linger_ms / 1000,
        )

    @property
    def waiting(self) -> int:
        """Groups queued for the next flush."""
        return self._commits.waiting

    def transact(self, items: list[dict[str, Any]]) -> Reasons | None:
        """Write ``items`` atomically: ``None``, or their cancellation reasons if a condition failed."""
        result: Reasons | None = self._commits.submit(Group.of(items))
        return result

    def transact_many(self, groups: Sequence[list[dict[str, Any]]]) -> list[Reasons | BaseException | None]:
        """Write each group atomically, all of them in as few ``TransactWriteItems`` as fit (one caller's batch,
        say a batch submit): per group ``None``, its cancellation reasons, or its error.

        Flushed one after the other in the caller's thread, outside the shared queue (a batch makes its own full
        transactions). A group whose key an earlier group of the batch writes goes in a later transaction, so a
        repeated idempotency key fails its own condition, not its neighbours'. Once DynamoDB is unavailable the
        groups not yet sent get that error unsent: more calls would only meet the same throttle.
        """
        every = [Pending(Group.of(items)) for items in groups]
        waiting = list(every)
        while waiting:
            batch = _select(waiting)
            self._send(batch)
            down = next((p.error for p in batch if isinstance(p.error, StoreUnavailable)), None)
            if down is not None:
                self._fail(waiting, down)
                break
        return [pending.error if pending.error is not None else pending.result for pending in every]

    # ----------------------------------------------------------------- one flush
    def _send(self, batch: list[Pending[Group]]) -> None:
        """Write the batch's groups; settle each with ``None``, its reasons or its error."""
        groups = batch
        while groups:
            items = groups[0].request.items
            if len(groups) == 1 and len(items) == 1 and _kind(items[0]) in SINGLE_CALLS:
                self._single(groups[0])
                return
            groups = self._transaction(groups)

    def _transaction(self, groups: list[Pending[Group]]) -> list[Pending[Group]]:
        """One ``TransactWriteItems`` of every group's items; the groups to send again (those a cancellation
        did not concern)."""
        items = [item for pending in groups for item in pending.request.items]
        try:
            # A fresh token per transaction: botocore's retries of this call resend it, so a transaction whose
            # answer was lost is applied once (not refused by its own conditions).
            self._table.client.transact_write_items(TransactItems=items, ClientRequestToken=str(uuid.uuid4()))
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            reasons: list[Any] = error.response.get("CancellationReasons") or []
            if code == "TransactionCanceledException" and len(reasons) == len(items):
                return self._cancelled(groups, reasons, error)
            if code in UNAVAILABLE_CODES or (code == "TransactionCanceledException" and _unavailable(reasons)):
                self._fail(groups, unavailable(error))
            elif code == "ValidationException" and len(groups) > 1:
                # e.g. over 4 MB: each group alone, so only a wrong one gets the error. Only a refusal of the
                # request as such: after any other error the transaction may have been applied, and groups sent
                # again under new tokens would then fail against their own writes.
                for pending in groups:
                    self._send([pending])
            else:  # the callers decide (a commit's conflict path recognises its own write)
                self._fail(groups, unavailable(error) if code.startswith("TransactionInProgress") else error)
            return []
        except BotoCoreError as error:
            self._fail(groups, unavailable(error))
            return []
        for pending in groups:
            self._commits.settle(pending)
        return []

    def _cancelled(self, groups: list[Pending[Group]], reasons: Reasons, error: ClientError) -> list[Pending[Group]]:
        """Settle the groups a cancellation names; the others go again."""
        again: list[Pending[Group]] = []
        start = 0
        for pending in groups:
            mine = reasons[start : start + len(pending.request.items)]
            start += len(mine)
            codes = {reason.get("Code") for reason in mine} - {None, "None"}
            if codes & CONFLICT_CODES:
                self._commits.settle(pending, result=mine)
            elif codes & UNAVAILABLE_CODES:
                self._commits.settle(pending, error=unavailable(error))
            elif codes:
                self._commits.settle(pending, error=error)
            else:
                again.append(pending)
        if len(again) == len(groups):  # no item named: nothing would change by sending it again
            self._fail(again, error)
            return []
        return again

    def _single(self, pending: Pending[Group]) -> None:
        """A lone item as its plain call, its failed condition as a one-reason list."""
        item = pending.request.items[0]
        kind = _kind(item)
        request = item[kind]
        try:
            getattr(self._table.client, SINGLE_CALLS[kind])(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                old = error.response.get("Item")
                if kind == "Put" and old is not None and old == request["Item"] and _retried(error):
                    # botocore sent it again after an answer was lost: the item there is the one we put.
                    self._commits.settle(pending)
                    return
                reason: dict[str, Any] = {"Code": "ConditionalCheckFailed", "Message": _message(error)}
                if old is not None:
                    reason["Item"] = old
                self._commits.settle(pending, result=[reason])
            elif code == "TransactionConflictException":
                self._commits.settle(pending, result=[{"Code": "TransactionConflict", "Message": _message(error)}])
            elif code in UNAVAILABLE_CODES:
                self._commits.settle(pending, error=unavailable(error))
            else:
                self._commits.settle(pending, error=error)
            return
        except BotoCoreError as error:
            self._commits.settle(pending, error=unavailable(error))
            return
        self._commits.settle(pending)

    def _fail(self, groups: Sequence[Pending[Group]], error: BaseException) -> None:
        for pending in groups:
            self._commits.settle(pending, error=error)


def _select(queue: list[Pending[Group]]) -> list[Pending[Group]]:
    """Take the queue's head and every later group that fits with it (items, bytes, no key twice)."""
    batch: list[Pending[Group]] = []
    keys: set[tuple[str, ...]] = set()
    items = size = 0
    for pending in list(queue):
        group = pending.request
        if batch and (items + len(group.items) > MAX_ITEMS or size + group.size > MAX_BYTES):
            break
        if batch and not keys.isdisjoint(group.keys):
            continue  # a later flush: one transaction may not touch an item twice
        batch.append(pending)
        queue.remove(pending)
        keys |= group.keys
        items += len(group.items)
        size += group.size
    return batch


def _kind(item: dict[str, Any]) -> str:
    return next(iter(item))


def _key(item: dict[str, Any]) -> tuple[str, ...]:
    """The table and key an item writes."""
    request = item[_kind(item)]
    key = request["Key"] if "Key" in request else {name: request["Item"][name] for name in KEY_ATTRIBUTES}
    return (request["TableName"], *(str(next(iter(key[name].values()))) for name in sorted(key)))


def _size(value: Any) -> int:
    """Bytes a request's values carry, about (strings as UTF-8)."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    if isinstance(value, dict):
        return sum(len(name) + _size(inner) for name, inner in value.items())
    if isinstance(value, list | tuple):
        return sum(_size(inner) for inner in value)
    if isinstance(value, bytes):
        return len(value)
    return 8


def _unavailable(reasons: Reasons) -> bool:
    return any(reason.get("Code") in UNAVAILABLE_CODES for reason in reasons)


def _retried(error: ClientError) -> bool:
    return int(error.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) > 0


def _message(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))
