"""The single-table key design: every item and index key tq writes is built here and nowhere else.

See docs/ARCHITECTURE.md ("Key design") for the access pattern each key or index serves.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

from tqcore.domain.codec import ts
from tqcore.domain.model import Status
from tqcore.domain.task import Task

SNAPSHOT_SK = "TASK"
#: The running attempt's lease: beside the snapshot, so heartbeats extend it without a versioned commit.
LEASE_SK = "TASK#LEASE"
EVENT_PREFIX = "EVT#"
IDEM_SK = "IDEM"
CATALOG_PK = "CATALOG"
#: The groups tasks were ever submitted into (what an admin's listing spans).
GROUPS_PK = "GROUPS"
PRESENCE_PK = "PRESENCE"
MARK_PK = "MARK"
#: One item per one-off data migration (sort key: its name), put once it has run over the whole table.
MIGRATION_PK = "MIGRATION"
#: Every API key record, one item per key id (sort key): a small partition, read by GetItem on each uncached
#: request and queried whole only by ``tq-keys list``.
API_KEY_PK = "APIKEY"

#: Global secondary indexes: name -> (partition key attribute, sort key attribute).
INDEXES: dict[str, tuple[str, str]] = {
    "by_group": ("grp_pk", "grp_sk"),
    "due": ("due_pk", "due_sk"),
    "reap": ("reap_pk", "reap_sk"),
    "dlq": ("dlq_pk", "dlq_sk"),
}
#: Only these indexes project whole items; ``by_group`` keeps keys only so a busy group's partition
#: is written once per task (at creation) instead of at every state change.
KEYS_ONLY_INDEXES = frozenset({"by_group"})
TTL_ATTRIBUTE = "expires_ttl"


def task_pk(task_id: str) -> str:
    """Partition of one task: its snapshot (and, while an attempt runs, its lease); its events: ``event_pk``."""
    return f"TASK#{task_id}"


#: Events per history partition: a task's events live in partitions of this many consecutive seqs, apart from
#: its snapshot, so a page of history is a key-range read in one or two small partitions however long the task
#: lived (on DynamoDB a query costs what it returns; on the emulators, what its partition holds).
HISTORY_BUCKET = 256


def history_bucket(seq: int) -> int:
    """Which history partition of its task the event ``seq`` is in."""
    return seq // HISTORY_BUCKET


def event_pk(task_id: str, seq: int) -> str:
    """Partition of the task's events ``seq`` falls in with (``HISTORY_BUCKET`` consecutive seqs each)."""
    return history_pk(task_id, history_bucket(seq))


def history_pk(task_id: str, bucket: int) -> str:
    """One history partition of a task: events ``bucket * HISTORY_BUCKET`` up to the next bucket's first."""
    return f"HIST#{task_id}#{bucket}"


def event_sk(seq: int) -> str:
    """Sort key of the event that produced version ``seq``."""
    return f"{EVENT_PREFIX}{seq:010d}"


def idem_pk(group: str, key: str) -> str:
    """Partition of one idempotency record (scoped by group)."""
    return f"IDEM#{group}#{key}"


def group_pk(group: str) -> str:
    """Partition of a group in the ``by_group`` index (every task of the group, by id)."""
    return f"G#{group}"


def shard_of(task_id: str, shards: int) -> int:
    """A stable shard number for a task (crc32, not ``hash()``, which changes per process)."""
    return zlib.crc32(task_id.encode()) % shards


def minute_bucket(at: datetime) -> str:
    """The time bucket of the ``due`` index: one partition per minute and shard."""
    return ts(at.replace(second=0, microsecond=0))[:16]  # type: ignore[index]


def index_attributes(task: Task, *, due_shards: int, reap_shards: int, resend_after_s: float) -> dict[str, str]:
    """The sparse index keys a snapshot carries in its current state."""
    attrs = {"grp_pk": group_pk(task.group), "grp_sk": task.id}
    wake_at = due_at(task)
    if wake_at is not None:
        shard = shard_of(task.id, due_shards)
        attrs["due_pk"] = f"DUE#{minute_bucket(wake_at)}#{shard}"
        attrs["due_sk"] = f"{ts(wake_at)}#{task.id}"
    reap_at = _reap_at(task, resend_after_s)
    if reap_at is not None:
        attrs["reap_pk"] = reap_partition(task.status, shard_of(task.id, reap_shards))
        attrs["reap_sk"] = f"{ts(reap_at)}#{task.id}"
    elif wake_at is not None:
        # Due work also sits in one partition per shard, not per minute: the scheduler's sweep finds every
        # overdue task there however old, in one paged query per shard.
        attrs.update(sweep_index_attributes(task.id, attrs["due_sk"], reap_shards))
    if task.status is Status.FAILED:
        attrs["dlq_pk"] = f"DLQ#{task.group}"
        attrs["dlq_sk"] = f"{ts(task.finished_at)}#{task.id}"
    return attrs


def due_at(task: Task) -> datetime | None:
    """The time the ``due`` index files the task under: its ``wake_at``, but never before its last write."""
    wake_at = task.wake_at
    # Never in a bucket older than the write itself: a scheduler may have drained it already (an
    # ``expires_at`` or ``at`` set in the past must still be found, and acted on at once).
    if wake_at is not None and task.updated_at is not None and wake_at < task.updated_at:
        return task.updated_at
    return wake_at


def reap_partition(status: Status, shard: int) -> str:
    """``reap`` index partition: queued (re-send deadlines) and running (lease expiries) kept apart, so a
    pile of one kind never hides the other from a query."""
    kind = "Q" if status is Status.QUEUED else "R"
    return f"REAP#{kind}#{shard}"


def sweep_partition(shard: int) -> str:
    """``reap`` index partition of due work that is not queued (scheduled, retrying, or running with a slot
    pending), by due time: the scheduler's sweep, apart from the reaper's two kinds."""
    return f"REAP#D#{shard}"


def sweep_index_attributes(task_id: str, due_sk: str, reap_shards: int) -> dict[str, str]:
    """The ``reap`` index keys of due work that is not queued: the ``due`` index's sort key (time, then id) in
    the task's sweep partition (``backfill`` gives them to snapshots written before the sweep existed)."""
    return {"reap_pk": sweep_partition(shard_of(task_id, reap_shards)), "reap_sk": due_sk}


def lease_index_attributes(task_id: str, expires_at: datetime, reap_shards: int) -> dict[str, str]:
    """The ``reap`` index keys of a lease item: found by the reaper once ``expires_at`` has passed."""
    return {
        "reap_pk": reap_partition(Status.RUNNING, shard_of(task_id, reap_shards)),
        "reap_sk": f"{ts(expires_at)}#{task_id}",
    }


def _reap_at(task: Task, resend_after_s: float) -> datetime | None:
    """When the reaper should look at a queued task if no claim comes first (running tasks: see the lease)."""
    if task.status is Status.QUEUED and task.queued_at is not None:
        # Each re-send doubles the wait, so a long backlog costs O(log) duplicate messages per task.
        return task.queued_at + timedelta(seconds=min(resend_after_s * 2**task.resends, 900 + resend_after_s))
    return None


def api_key_sk(key_id: str) -> str:
    """Sort key of one API key's record in the ``API_KEY_PK`` partition."""
    return f"KEY#{key_id}"
