"""Lease items: one per running attempt, beside the snapshot (``TASK#<id>`` / ``TASK#LEASE``).

The claim's commit puts the lease; heartbeats extend it with a plain conditional update (no new version, no
event: a heartbeat every 10 s would otherwise flood the history and race every user change); the commit that
ends the attempt deletes it. The commit of a ``cancel_requested`` event also sets ``cancel_requested`` on the
lease, and the heartbeat's update returns the item (``ALL_NEW``), so the executor learns of the cancel at its
next beat without any extra call. The reaper finds expired leases through the ``reap`` index
(``REAP#R#<bucket>#<shard>``) and reclaims one only if its delete still sees it expired, so a heartbeat that
lands first wins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tqcore.adapters.dynamodb import keys
from tqcore.domain.codec import parse_ts, ts
from tqcore.domain.model import EventType
from tqcore.domain.task import Task
from tqcore.ports import LeaseRecord, LeaseState


def lease_key(task_id: str) -> dict[str, Any]:
    """The lease item's key."""
    return {"PK": {"S": keys.task_pk(task_id)}, "SK": {"S": keys.LEASE_SK}}


def lease_ops(table: str, task: Task, *, reap_shards: int, expired_before: datetime | None) -> list[dict[str, Any]]:
    """Transaction items that keep the lease in step with a commit: put on a claim, delete when it ends."""
    ops: list[dict[str, Any]] = []
    if task.released_claim is not None:
        condition = "claim_seq = :claim"
        values: dict[str, Any] = {":claim": {"N": str(task.released_claim)}}
        if expired_before is not None:
            condition += " AND expires_at < :before"
            values[":before"] = {"S": ts(expired_before)}
        ops.append(
            {
                "Delete": {
                    "TableName": table,
                    "Key": lease_key(task.id),
                    "ConditionExpression": f"attribute_not_exists(PK) OR ({condition})"
                    if expired_before is None
                    else condition,
                    "ExpressionAttributeValues": values,
                }
            }
        )
    cancel = any(event.type is EventType.CANCEL_REQUESTED for event in task.pending_events)
    if cancel and task.claim_seq is not None and task.released_claim is None:
        # The snapshot's version condition proves this claim is the running one, so its lease is there.
        ops.append(
            {
                "Update": {
                    "TableName": table,
                    "Key": lease_key(task.id),
                    "UpdateExpression": "SET cancel_requested = :yes",
                    "ConditionExpression": "claim_seq = :claim",
                    "ExpressionAttributeValues": {":yes": {"BOOL": True}, ":claim": {"N": str(task.claim_seq)}},
                }
            }
        )
    claimed = any(event.type is EventType.CLAIMED for event in task.pending_events)
    if claimed and task.claim_seq is not None and task.lease_expires_at is not None and task.worker is not None:
        ops.append({"Put": {"TableName": table, "Item": lease_item(task, reap_shards)}})
    return ops


def lease_item(task: Task, reap_shards: int) -> dict[str, Any]:
    """The lease item for a freshly claimed task."""
    assert task.claim_seq is not None
    assert task.lease_expires_at is not None
    assert task.worker is not None
    item: dict[str, Any] = {
        **lease_key(task.id),
        "task_id": {"S": task.id},
        "claim_seq": {"N": str(task.claim_seq)},
        "worker": {"S": task.worker},
        "expires_at": {"S": ts(task.lease_expires_at)},
    }
    for name, value in keys.lease_index_attributes(task.id, task.lease_expires_at, reap_shards).items():
        item[name] = {"S": value}
    return item


def extend_request(table: str, task_id: str, claim_seq: int, until: datetime, reap_shards: int) -> dict[str, Any]:
    """An UpdateItem request moving a lease's expiry (and its place in the ``reap`` index) to ``until``."""
    index = keys.lease_index_attributes(task_id, until, reap_shards)
    return {
        "TableName": table,
        "Key": lease_key(task_id),
        # Both index keys: the new expiry may fall in another bucket of the ``reap`` index.
        "UpdateExpression": "SET expires_at = :until, reap_pk = :pk, reap_sk = :sk",
        "ConditionExpression": "claim_seq = :claim",
        "ExpressionAttributeValues": {
            ":until": {"S": ts(until)},
            ":pk": {"S": index["reap_pk"]},
            ":sk": {"S": index["reap_sk"]},
            ":claim": {"N": str(claim_seq)},
        },
        # The whole (small) item comes back with the write: its ``cancel_requested`` costs no extra read.
        "ReturnValues": "ALL_NEW",
    }


def record_from_item(item: dict[str, Any]) -> LeaseRecord:
    """Decode a lease item."""
    expires_at = parse_ts(item["expires_at"]["S"])
    assert expires_at is not None
    return LeaseRecord(
        item["task_id"]["S"],
        int(item["claim_seq"]["N"]),
        item["worker"]["S"],
        expires_at,
        cancel_requested=_cancel_requested(item),
    )


def state_after_extend(attributes: dict[str, Any]) -> LeaseState:
    """What an extended lease (the update's ``ALL_NEW`` attributes) tells its attempt."""
    return LeaseState.CANCEL_REQUESTED if _cancel_requested(attributes) else LeaseState.HELD


def _cancel_requested(item: dict[str, Any]) -> bool:
    """Whether a lease item carries the flag a ``cancel_requested`` commit sets."""
    return bool(item.get("cancel_requested", {}).get("BOOL", False))


def overlay(task: Task, lease: LeaseRecord | None) -> Task:
    """The task with the lease's current expiry, when the lease belongs to its current claim."""
    if lease is not None and lease.claim_seq == task.claim_seq:
        task.lease_expires_at = lease.expires_at
    return task
