"""The single-table key design: every item and index key tq writes is built here and nowhere else.

See docs/ARCHITECTURE.md ("Key design") for the access pattern each key or index serves.
"""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

from tqcore.domain.codec import parse_ts, ts
from tqcore.domain.model import Status
from tqcore.domain.task import Task

#: The task item: its snapshot (``doc``), its newest events (``evts``) and its running attempt's lease.
SNAPSHOT_SK = "TASK"
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
    "sched": ("sch_pk", "sch_sk"),
}
#: Only these indexes project whole items; ``by_group`` keeps keys only so a busy group's partition
#: is written once per task (at creation) instead of at every state change, and ``sched`` likewise once when a
#: scheduled task is submitted and once when it leaves (its runs write it no more).
KEYS_ONLY_INDEXES = frozenset({"by_group", "sched"})
TTL_ATTRIBUTE = "expires_ttl"


def task_pk(task_id: str) -> str:
    """Partition of one task: its item (snapshot, inline events, lease); its older events: ``event_pk``."""
    return f"TASK#{task_id}"


def task_id_of(pk: str) -> str:
    """The task id of a :func:`task_pk`."""
    return pk.removeprefix("TASK#")


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


def schedule_pk(group: str) -> str:
    """Partition of a group in the ``sched`` index (its schedules: see :func:`on_schedule`)."""
    return f"S#{group}"


def on_schedule(task: Task) -> bool:
    """Whether the schedules page lists the task (the sparse ``sched`` index holds it): a repeating task until
    it ends (paused too), a one-off ``at`` task while it waits for its time (not yet run)."""
    if task.schedule is None or task.status.is_terminal:
        return False
    return task.is_repeating or task.status is Status.SCHEDULED


def shard_of(task_id: str, shards: int) -> int:
    """A stable shard number for a task (crc32, not ``hash()``, which changes per process)."""
    return zlib.crc32(task_id.encode()) % shards


def minute_bucket(at: datetime) -> str:
    """The time bucket of the ``due`` index: one partition per minute and shard."""
    return ts(at.replace(second=0, microsecond=0))[:16]  # type: ignore[index]


#: The ``reap`` index's three kinds of deadline, each walked by its own reader (``deadlines.py``).
RESEND = "Q"  #: a queued task's re-send deadline (the reaper)
LEASE = "R"  #: a running attempt's lease expiry (the reaper)
SWEEP = "D"  #: a waiting task's due time, when it is not queued (the scheduler's sweep)
#: How wide a ``reap`` bucket is, per kind: a query reads one bucket (of one shard), so what it costs on ministack
#: (by the items in the partition) is bounded by the deadlines that fall in one bucket, not by the backlog.
#: Leases are read at each reaper pass to the second (a lease expires 30 s after its last beat, so they all sit in
#: the bucket of now or the next); re-sends, whose deadlines spread over up to 15 minutes ahead, in wider buckets
#: (fewer partitions for the oldest-queued gauge to read); the sweep's are read once a minute.
BUCKET_WIDTH: dict[str, timedelta] = {
    RESEND: timedelta(minutes=5),
    LEASE: timedelta(minutes=1),
    SWEEP: timedelta(minutes=10),
}


def minute_buckets(since: datetime, until: datetime) -> list[str]:
    """The ``due`` index's minute buckets from ``since``'s to ``until``'s, inclusive."""
    buckets = []
    at = since.replace(second=0, microsecond=0)
    while at <= until:
        buckets.append(minute_bucket(at))
        at += timedelta(minutes=1)
    return buckets


def index_attributes(task: Task, *, due_shards: int, reap_shards: int, resend_after_s: float) -> dict[str, str]:
    """The sparse index keys a snapshot carries in its current state."""
    attrs = {"grp_pk": group_pk(task.group), "grp_sk": task.id}
    if on_schedule(task):
        attrs["sch_pk"] = schedule_pk(task.group)
        attrs["sch_sk"] = task.id
    wake_at = due_at(task)
    if wake_at is not None:
        shard = shard_of(task.id, due_shards)
        attrs["due_pk"] = f"DUE#{minute_bucket(wake_at)}#{shard}"
        attrs["due_sk"] = f"{ts(wake_at)}#{task.id}"
    reap_at = resend_at(task, resend_after_s)
    if reap_at is not None:
        attrs.update(reap_attributes(RESEND, reap_at, task.id, reap_shards))
    elif task.status is Status.RUNNING and task.lease_expires_at is not None:
        # The lease lives in the task item: a running task is reaped when its lease expires (heartbeats move
        # these keys; a running repeating task's next slot is still in the ``due`` index, not in the sweep's).
        attrs.update(lease_index_attributes(task.id, task.lease_expires_at, reap_shards))
    elif wake_at is not None:
        # Due work also sits in the sweep's buckets: the scheduler's sweep finds every overdue task there,
        # however old, walking buckets from a durable mark (``deadlines.py``).
        attrs.update(reap_attributes(SWEEP, wake_at, task.id, reap_shards))
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


def bucket_of(kind: str, at: datetime) -> datetime:
    """The start of the ``reap`` bucket of ``kind`` that a deadline at ``at`` falls in."""
    width = BUCKET_WIDTH[kind].total_seconds()
    return datetime.fromtimestamp(at.timestamp() // width * width, tz=UTC)


def reap_partition(kind: str, bucket: datetime, shard: int) -> str:
    """``reap`` index partition of one kind, bucket (its start) and shard: kinds never share a partition, and
    a partition holds the deadlines of one bucket only."""
    return f"REAP#{kind}#{minute_bucket(bucket)}#{shard}"


def reap_attributes(kind: str, at: datetime, task_id: str, reap_shards: int) -> dict[str, str]:
    """The ``reap`` index keys of a deadline of ``kind`` at ``at``. Both keys follow the deadline: a write that
    moves it (a heartbeat) must set both, or the item is left in a bucket its new deadline is not in."""
    bucket = bucket_of(kind, at)
    return {"reap_pk": reap_partition(kind, bucket, shard_of(task_id, reap_shards)), "reap_sk": f"{ts(at)}#{task_id}"}


def sweep_index_attributes(task_id: str, due_sk: str, reap_shards: int) -> dict[str, str]:
    """The ``reap`` index keys of due work that is not queued, from its ``due`` index sort key (time, then id)
    (``backfill`` gives them to snapshots written before the sweep existed)."""
    at = parse_ts(due_sk.partition("#")[0])
    assert at is not None
    return reap_attributes(SWEEP, at, task_id, reap_shards)


def lease_index_attributes(task_id: str, expires_at: datetime, reap_shards: int) -> dict[str, str]:
    """The ``reap`` index keys of a running task: found by the reaper once its lease's ``expires_at`` has passed."""
    return reap_attributes(LEASE, expires_at, task_id, reap_shards)


def resend_at(task: Task, resend_after_s: float) -> datetime | None:
    """When the reaper should look at a queued task if no claim comes first (running tasks: see the lease)."""
    if task.status is Status.QUEUED and task.queued_at is not None:
        # Each re-send doubles the wait, so a long backlog costs O(log) duplicate messages per task.
        at = task.queued_at + timedelta(seconds=min(resend_after_s * 2**task.resends, 900 + resend_after_s))
        # Never before the write (a re-send long after its deadline): the walk may have sealed older buckets.
        return max(at, task.updated_at) if task.updated_at is not None else at
    return None


def api_key_sk(key_id: str) -> str:
    """Sort key of one API key's record in the ``API_KEY_PK`` partition."""
    return f"KEY#{key_id}"
