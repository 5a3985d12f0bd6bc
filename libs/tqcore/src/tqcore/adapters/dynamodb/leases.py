"""The running attempt's lease: attributes of the task item itself (``TASK#<id>`` / ``TASK``), beside its ``doc``.

The claim's commit sets ``claim_seq`` and ``lease_until`` (and the ``reap`` index keys of a running task, its lease
expiry: ``keys.lease_index_attributes``); the commit that ends the attempt removes them. A heartbeat is one
conditional ``UpdateItem`` on the task item (``claim_seq = :mine`` and still running) that moves ``lease_until`` and
the ``reap`` keys without a new version or an event (a beat every 10 s would otherwise flood the history and race
every user change), and returns nothing. Every commit sets ``cancel_requested`` from the task, and the beat is
conditioned on it being unset: a refused beat is tried once more without that condition, and if that one holds,
the attempt is told of the cancel (two writes, once per cancelled attempt; one write on every other beat, and no
read). A commit that neither claims nor
ends the attempt leaves ``lease_until`` and the ``reap`` keys alone, so it never moves back an expiry a heartbeat
moved forward after the commit's read. The reaper finds expired leases through the ``reap`` index
(``REAP#R#<bucket>#<shard>``) and reclaims one only if its commit still sees ``lease_until`` before the time it
looked, so a heartbeat that lands first wins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tqcore.adapters.dynamodb import keys
from tqcore.domain.codec import parse_ts, ts
from tqcore.domain.model import EventType, Status
from tqcore.domain.task import Task
from tqcore.ports import LeaseRecord

CLAIM = "claim_seq"
UNTIL = "lease_until"
CANCEL = "cancel_requested"
#: What the reaper reads of a task item found in the ``reap`` index (not its ``doc`` nor its events).
RECORD_PROJECTION = f"PK, worker, {CLAIM}, {UNTIL}, {CANCEL}"


def claims(task: Task) -> bool:
    """Whether this commit claims an attempt (so it sets the lease)."""
    return (
        task.claim_seq is not None
        and task.lease_expires_at is not None
        and task.worker is not None
        and any(event.type is EventType.CLAIMED for event in task.pending_events)
    )


def keeps_lease(task: Task) -> bool:
    """Whether a commit leaves the lease attributes (and the ``reap`` keys) as they are: the attempt runs on and
    this commit did not start it, so a heartbeat may have moved the expiry since the task was read."""
    return task.status is Status.RUNNING and not claims(task)


def attributes(task: Task) -> dict[str, Any]:
    """The lease attributes a claimed task's item carries (empty when no attempt holds a lease)."""
    if task.status is not Status.RUNNING or task.claim_seq is None or task.lease_expires_at is None:
        return {}
    return {CLAIM: {"N": str(task.claim_seq)}, UNTIL: {"S": ts(task.lease_expires_at)}}


def extend_request(
    table: str, task_id: str, claim_seq: int, until: datetime, reap_shards: int, *, unless_cancelled: bool
) -> dict[str, Any]:
    """An UpdateItem request moving a lease's expiry (and its place in the ``reap`` index) to ``until``, if claim
    ``claim_seq`` still holds it (and, ``unless_cancelled``, no cancel was requested). Nothing comes back."""
    index = keys.lease_index_attributes(task_id, until, reap_shards)
    condition = f"{CLAIM} = :claim AND #status = :running"
    values = {
        ":until": {"S": ts(until)},
        ":pk": {"S": index["reap_pk"]},
        ":sk": {"S": index["reap_sk"]},
        ":claim": {"N": str(claim_seq)},
        ":running": {"S": Status.RUNNING.value},
    }
    if unless_cancelled:
        condition += f" AND (attribute_not_exists({CANCEL}) OR {CANCEL} = :no)"
        values[":no"] = {"BOOL": False}
    return {
        "TableName": table,
        "Key": {"PK": {"S": keys.task_pk(task_id)}, "SK": {"S": keys.SNAPSHOT_SK}},
        # Both index keys: the new expiry may fall in another bucket of the ``reap`` index.
        "UpdateExpression": f"SET {UNTIL} = :until, reap_pk = :pk, reap_sk = :sk",
        "ConditionExpression": condition,
        "ExpressionAttributeNames": {"#status": "status"},
        "ExpressionAttributeValues": values,
    }


def record_from_item(item: dict[str, Any]) -> LeaseRecord:
    """The lease of a task item (at least :data:`RECORD_PROJECTION`)."""
    expires_at = parse_ts(item[UNTIL]["S"])
    assert expires_at is not None
    return LeaseRecord(
        keys.task_id_of(item["PK"]["S"]),
        int(item[CLAIM]["N"]),
        item["worker"]["S"],
        expires_at,
        cancel_requested=_cancel_requested(item),
    )


def expired_before(item: dict[str, Any], before: datetime) -> bool:
    """Whether a task item's lease ran out before ``before`` (what a reclaim's condition asks)."""
    until = item.get(UNTIL, {}).get("S")
    return until is not None and until < (ts(before) or "")


def _cancel_requested(item: dict[str, Any]) -> bool:
    return bool(item.get(CANCEL, {}).get("BOOL", False))


def overlay(task: Task, item: dict[str, Any]) -> Task:
    """The task with its item's live lease expiry (heartbeats move it without a new ``doc``)."""
    until = item.get(UNTIL, {}).get("S")
    if until is not None and task.status is Status.RUNNING and task.claim_seq is not None:
        task.lease_expires_at = parse_ts(until)
    return task
