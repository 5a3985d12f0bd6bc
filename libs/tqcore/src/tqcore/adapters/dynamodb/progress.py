"""The running attempt's progress: an attribute of the task item itself (``progress``, JSON text), beside its ``doc``.

The executor writes it with one conditional ``UpdateItem`` (``claim_seq = :mine`` and still running), like a
heartbeat: no new version, no event (progress reports would otherwise flood the history and race every user
change). A stale attempt's write is refused by the condition, so it never overwrites a newer attempt's report; the
commit of a claim removes the attribute (a new attempt starts with none), other commits leave it alone, so the last
report of an attempt stays readable after the attempt ended. Every read overlays it on the task (the ``doc`` only
holds what the last commit saw).
"""

from __future__ import annotations

import json
from typing import Any

from tqcore.adapters.dynamodb import keys, leases
from tqcore.documents import ListedTask
from tqcore.domain.codec import progress_from_dict, progress_to_dict
from tqcore.domain.model import Progress, Status
from tqcore.domain.task import Task

PROGRESS = "progress"


def write_request(table: str, task_id: str, claim_seq: int, progress: Progress) -> dict[str, Any]:
    """An UpdateItem request setting the task item's progress, if claim ``claim_seq`` still runs it."""
    return {
        "TableName": table,
        "Key": {"PK": {"S": keys.task_pk(task_id)}, "SK": {"S": keys.SNAPSHOT_SK}},
        "UpdateExpression": "SET #progress = :progress",
        "ConditionExpression": f"{leases.CLAIM} = :claim AND #status = :running",
        "ExpressionAttributeNames": {"#progress": PROGRESS, "#status": "status"},
        "ExpressionAttributeValues": {
            ":progress": {"S": json.dumps(progress_to_dict(progress), separators=(",", ":"), ensure_ascii=False)},
            ":claim": {"N": str(claim_seq)},
            ":running": {"S": Status.RUNNING.value},
        },
    }


def of_item(item: dict[str, Any]) -> Progress | None:
    """The progress a task item holds, if any (an unreadable one counts as none)."""
    text = item.get(PROGRESS, {}).get("S")
    if text is None:
        return None
    try:
        return progress_from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None


def overlay(task: Task, item: dict[str, Any]) -> Task:
    """The task with its item's progress (the attribute, not the ``doc``, is the record of it)."""
    task.progress = of_item(item)
    return task


def overlay_listed(task: ListedTask, item: dict[str, Any]) -> ListedTask:
    """:func:`overlay` for a listed document."""
    return task.with_progress(of_item(item))
