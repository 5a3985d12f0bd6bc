"""In-memory fakes of the ports, for unit tests of pure logic; they pass the same contract tests as the adapters."""

from __future__ import annotations

import copy
import json
import threading
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tqcore.activity import Activity
from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.task_store import MAX_SNAPSHOT_BYTES
from tqcore.documents import ListedTask
from tqcore.domain.access import ApiKey
from tqcore.domain.codec import task_to_dict
from tqcore.domain.errors import LeaseHeld, TaskNotFound, TaskTooLarge, TqError, VersionConflict
from tqcore.domain.model import Event, EventType, Priority, Progress, Status
from tqcore.domain.task import Task
from tqcore.errors import QueueUnavailable, TypeServedElsewhere
from tqcore.ports import (
    DuplicateRequest,
    IdempotencyRecord,
    LeaseRecord,
    LeaseState,
    LiveInstance,
    QueueDepth,
    TypeInfo,
)
from tqcore.queries import TaskStamp
from tqcore.settings import DEFAULT_POOL, CoreSettings


class FixedClock:
    """A clock that moves only when told to."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

    def now(self) -> datetime:
        """The fixed time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self._now += timedelta(seconds=seconds)


class InMemoryTaskStore:
    """The task store in a dict, with the same version condition as DynamoDB's transaction."""

    def __init__(self, *, resend_after_s: float = 30) -> None:
        self._tasks: dict[str, Task] = {}
        self._events: dict[str, list[Event]] = {}
        self._idem: dict[tuple[str, str], IdempotencyRecord] = {}
        self._lock = threading.Lock()
        self._resend_after_s = resend_after_s
        self._leases: dict[str, LeaseRecord] = {}
        self._progress: dict[str, Progress] = {}

    def create(self, task: Task, idempotency: IdempotencyRecord | None = None) -> None:
        """Store a new task (and its idempotency record) or raise as the real store does."""
        with self._lock:
            if idempotency is not None:
                existing = self._idem.get((idempotency.group, idempotency.key))
                if existing is not None:
                    raise DuplicateRequest(existing)
            if task.id in self._tasks:
                raise VersionConflict(f"task {task.id} exists", current=None)
            if idempotency is not None:
                self._idem[(idempotency.group, idempotency.key)] = idempotency
            self._save(task)

    def create_many(self, new: Sequence[tuple[Task, IdempotencyRecord | None]]) -> list[Exception | None]:
        """:meth:`create` for each task in turn, its error kept as its outcome."""
        outcomes: list[Exception | None] = []
        for task, idempotency in new:
            try:
                self.create(task, idempotency)
                outcomes.append(None)
            except (TqError, DuplicateRequest) as error:
                outcomes.append(error)
        return outcomes

    def commit(self, task: Task, *, lease_expired_before: datetime | None = None) -> None:
        """Commit if the stored version is the one the task was read at (and, for a reclaim, the lease
        is still expired), keeping the lease in step as the DynamoDB store does."""
        expected = task.version - len(task.pending_events)
        with self._lock:
            current = self._tasks.get(task.id)
            if current is None or current.version != expected:
                raise VersionConflict(f"task {task.id} changed", current=self._overlaid(current))
            lease = self._leases.get(task.id)
            if lease_expired_before is not None and lease is not None and lease.expires_at >= lease_expired_before:
                raise LeaseHeld(f"the lease of task {task.id} was extended meanwhile")
            self._save(task)

    def _save(self, task: Task) -> None:
        size = len(json.dumps(task_to_dict(task)).encode())
        if size > MAX_SNAPSHOT_BYTES:
            raise TaskTooLarge(f"task {task.id} would be {size} bytes")
        self._events.setdefault(task.id, []).extend(task.pending_events)
        if task.released_claim is not None:
            self._leases.pop(task.id, None)
        if any(e.type is EventType.CLAIMED for e in task.pending_events):
            self._progress.pop(task.id, None)
            assert task.claim_seq is not None
            assert task.worker is not None
            assert task.lease_expires_at is not None
            self._leases[task.id] = LeaseRecord(task.id, task.claim_seq, task.worker, task.lease_expires_at)
        lease = self._leases.get(task.id)
        if lease is not None and any(e.type is EventType.CANCEL_REQUESTED for e in task.pending_events):
            self._leases[task.id] = replace(lease, cancel_requested=True)
        self._tasks[task.id] = replace(copy.deepcopy(task), pending_events=[], released_claim=None)

    def _overlaid(self, task: Task | None) -> Task | None:
        if task is None:
            return None
        task = copy.deepcopy(task)
        lease = self._leases.get(task.id)
        if lease is not None and lease.claim_seq == task.claim_seq:
            task.lease_expires_at = lease.expires_at
        task.progress = self._progress.get(task.id)
        return task

    def get(self, task_id: str) -> Task:
        """A copy of the stored task, with its lease's current expiry."""
        with self._lock:
            task = self._overlaid(self._tasks.get(task_id))
            if task is None:
                raise TaskNotFound(f"no task {task_id}")
            return task

    def extend_lease(self, task_id: str, claim_seq: int, until: datetime) -> LeaseState:
        """Heartbeat: move the lease if claim ``claim_seq`` still holds it; tell a requested cancel."""
        with self._lock:
            lease = self._leases.get(task_id)
            if lease is None or lease.claim_seq != claim_seq:
                return LeaseState.LOST
            self._leases[task_id] = replace(lease, expires_at=until)
            return LeaseState.CANCEL_REQUESTED if lease.cancel_requested else LeaseState.HELD

    def report_progress(self, task_id: str, claim_seq: int, report: Progress) -> bool:
        """Keep the running attempt's progress if claim ``claim_seq`` still runs the task (as DynamoDB's
        condition does)."""
        with self._lock:
            lease, task = self._leases.get(task_id), self._tasks.get(task_id)
            if lease is None or lease.claim_seq != claim_seq or task is None or task.status is not Status.RUNNING:
                return False
            self._progress[task_id] = report
            return True

    def events(self, task_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        """The task's events after ``after_seq``, oldest first, at most ``limit`` (``None``: all)."""
        with self._lock:
            later = [event for event in self._events.get(task_id, []) if event.seq > after_seq]
        return later if limit is None else later[:limit]

    def events_before(self, task_id: str, before_seq: int, limit: int) -> list[Event]:
        """At most ``limit`` of the task's events before ``before_seq``, newest first."""
        with self._lock:
            earlier = [event for event in self._events.get(task_id, []) if event.seq < before_seq]
        return earlier[::-1][:limit]

    def idempotency_record(self, group: str, key: str) -> IdempotencyRecord | None:
        """The record for a key, if any."""
        return self._idem.get((group, key))

    def unclaimed(self, now: datetime) -> Iterator[Task]:
        """Queued tasks past their re-send deadline before ``now`` (same rule as the DynamoDB index)."""
        return self._found(lambda task: keys.resend_at(task, self._resend_after_s), None, now)

    def lease_expired(self, now: datetime) -> Iterator[LeaseRecord]:
        """Leases that ran out before ``now``, oldest first."""
        with self._lock:
            expired = [lease for lease in self._leases.values() if lease.expires_at < now]
        return iter(sorted(expired, key=lambda lease: (lease.expires_at, lease.task_id)))

    def due(self, since: datetime, until: datetime, *, part: tuple[int, int] = (0, 1)) -> Iterator[Task]:
        """Tasks due from ``since`` to before ``until`` (same rule as the DynamoDB index), of one stable part."""
        k, n = part
        tasks = self._found(keys.due_at, since, until)
        return (task for task in tasks if zlib.crc32(task.id.encode()) % n == k)

    def overdue(self, before: datetime) -> Iterator[Task]:
        """Due tasks that are not queued, due before ``before`` (same rule as the index)."""

        def sweep_at(task: Task) -> datetime | None:
            return keys.due_at(task) if keys.resend_at(task, self._resend_after_s) is None else None

        return self._found(sweep_at, None, before)

    def _found(
        self, deadline: Callable[[Task], datetime | None], since: datetime | None, before: datetime
    ) -> Iterator[Task]:
        """Copies of the tasks whose ``deadline`` falls from ``since`` (if given) to before ``before``, oldest first."""
        hits = []
        with self._lock:
            for task in self._tasks.values():
                at = deadline(task)
                if at is not None and at < before and (since is None or at >= since):
                    hits.append((at, task.id, copy.deepcopy(task)))
        return iter([task for _, _, task in sorted(hits, key=lambda hit: hit[:2])])


class InMemoryRunLogs:
    """The run log store in a dict."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, int], bytes] = {}

    def put(self, task_id: str, claim_seq: int, body: bytes) -> None:
        """Keep the log."""
        self.logs[(task_id, claim_seq)] = bytes(body)

    def get(self, task_id: str, claim_seq: int) -> bytes | None:
        """The log, if kept."""
        return self.logs.get((task_id, claim_seq))


class RecordingQueue:
    """A queue that remembers what was sent, and can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[Task] = []
        self.dead: list[Task] = []
        self.fail_next = 0
        #: How many tasks each ``send_batch`` call carried.
        self.batches: list[int] = []

    def send(self, task: Task) -> None:
        """Record the send (or fail, if told to)."""
        if self.fail_next:
            self.fail_next -= 1
            raise QueueUnavailable("queue down (fake)")
        self.sent.append(copy.deepcopy(task))

    def send_batch(self, tasks: Sequence[Task]) -> None:
        """Record each send (the fake fails per task, like a partly failed batch)."""
        self.batches.append(len(tasks))
        failed = 0
        for task in tasks:
            try:
                self.send(task)
            except QueueUnavailable:
                failed += 1
        if failed:
            raise QueueUnavailable(f"{failed} of {len(tasks)} sends failed (fake)")

    def dead_letter(self, task: Task) -> None:
        """Record the dead letter."""
        self.dead.append(copy.deepcopy(task))

    def depths(self, pools: Sequence[str] = (DEFAULT_POOL,)) -> list[QueueDepth]:
        """What was sent and dead-lettered, per pool and priority (nothing is ever received from the fake)."""
        names = CoreSettings.model_construct(prefix="tq")
        return [
            QueueDepth(
                name=names.queue_name(priority, pool),
                priority=priority,
                depth=sum(task.priority is priority and task.pool == pool for task in self.sent),
                in_flight=0,
                dlq_depth=sum(task.priority is priority and task.pool == pool for task in self.dead),
                pool=pool,
            )
            for pool in pools
            for priority in Priority
        ]


class InMemoryRegistry:
    """Task types and presence in memory."""

    def __init__(self, types: Sequence[str] = ()) -> None:
        self._types: dict[str, TypeInfo] = {name: TypeInfo(name) for name in types}
        self._groups: set[str] = set()
        self._alive: dict[str, set[str]] = {}
        self._activity: dict[tuple[str, str], Activity | None] = {}
        self._marks: dict[str, datetime] = {}

    def register_types(
        self,
        types: Sequence[str | TypeInfo],
        by: str,
        specs: Mapping[str, str] | None = None,
        *,
        alive: Collection[str] | None = None,
    ) -> None:
        """Add types (a type registered again takes its new record); with ``alive``, refuse as DynamoDB's does."""
        infos = [t if isinstance(t, TypeInfo) else TypeInfo(t, spec=(specs or {}).get(t)) for t in types]
        for info in infos:  # every type checked before any is written: a refusal registers none
            seen = self._types.get(info.name)
            if alive is not None and seen is not None and seen.pool != info.pool and seen.registered_by in alive:
                raise TypeServedElsewhere(info.name, seen.pool, seen.registered_by)
        for info in infos:
            self._types[info.name] = replace(info, registered_by=by)

    def task_types(self) -> dict[str, TypeInfo]:
        """All types."""
        return dict(self._types)

    def add_group(self, group: str) -> None:
        """Remember a group."""
        self._groups.add(group)

    def groups(self) -> set[str]:
        """Every group remembered."""
        return set(self._groups)

    def heartbeat(self, service: str, instance: str, ttl_s: int, activity: Activity | None = None) -> None:
        """Mark alive (forever, in the fake), with what the instance did lately."""
        self._alive.setdefault(service, set()).add(instance)
        self._activity[service, instance] = activity

    def leave(self, service: str, instance: str) -> None:
        """Mark no longer alive."""
        self._alive.get(service, set()).discard(instance)

    def alive(self) -> dict[str, list[str]]:
        """Live instances."""
        return {service: sorted(instances) for service, instances in self._alive.items() if instances}

    def instances(self) -> list[LiveInstance]:
        """Live instances with the activity of their last heartbeat, by service and name."""
        return [
            LiveInstance(service, name, self._activity.get((service, name)))
            for service in sorted(self._alive)
            for name in sorted(self._alive[service])
        ]

    def mark(self, name: str) -> datetime | None:
        """A named mark."""
        return self._marks.get(name)

    def advance_mark(self, name: str, to: datetime) -> None:
        """Move a mark forward only."""
        if name not in self._marks or self._marks[name] < to:
            self._marks[name] = to


class InMemoryTaskQueries:
    """The read-side listings over an :class:`InMemoryTaskStore`, with the same order and cursors as DynamoDB's."""

    def __init__(self, store: InMemoryTaskStore) -> None:
        self._store = store

    def dead_letter_positions(self, group: str, before: str | None = None) -> Iterator[tuple[str, str]]:
        """``(position, id)`` of ``group``'s failed tasks, newest first, by the ``dlq`` index's keys (as DynamoDB)."""
        with self._store._lock:
            tasks = list(self._store._tasks.values())
        positions = []
        for task in tasks:
            attrs = keys.index_attributes(task, due_shards=1, reap_shards=1, resend_after_s=30)
            if attrs.get("dlq_pk") == f"DLQ#{group}" and (before is None or attrs["dlq_sk"] < before):
                positions.append((attrs["dlq_sk"], task.id))
        yield from sorted(positions, reverse=True)

    def newest_ids(self, group: str, before: str | None = None) -> Iterator[str]:
        """Ids of ``group``'s tasks, newest first, by the ``by_group`` index's sort key (as in DynamoDB)."""
        with self._store._lock:
            ids = [task.id for task in self._store._tasks.values() if task.group == group]
        yield from sorted((i for i in ids if before is None or i < before), reverse=True)

    def scheduled_ids(self, group: str, before: str | None = None) -> Iterator[str]:
        """Ids of ``group``'s schedules, newest first, by the sparse ``sched`` index's keys (as in DynamoDB)."""
        with self._store._lock:
            ids = [t.id for t in self._store._tasks.values() if t.group == group and keys.on_schedule(t)]
        yield from sorted((i for i in ids if before is None or i < before), reverse=True)

    def tasks(self, ids: Sequence[str]) -> list[Task]:
        """Copies of the tasks that exist (with their lease's current expiry), in the order given."""
        with self._store._lock:
            return [task for task in (self._store._overlaid(self._store._tasks.get(i)) for i in ids) if task]

    def listed(self, ids: Sequence[str]) -> list[ListedTask]:
        """:meth:`tasks` as the stored documents DynamoDB's adapter reads."""
        return [ListedTask.from_doc(json.dumps(task_to_dict(task), ensure_ascii=False)) for task in self.tasks(ids)]

    def stamps(self, ids: Sequence[str]) -> dict[str, TaskStamp]:
        """The version, status and progress of the tasks that exist (always current here)."""
        with self._store._lock:
            tasks = [self._store._tasks[i] for i in ids if i in self._store._tasks]
            return {task.id: TaskStamp(task.version, task.status, self._store._progress.get(task.id)) for task in tasks}

    def dead_letter_count(self, group: str, cap: int = 10_000) -> int:
        """How many failed tasks ``group`` has, up to ``cap``."""
        with self._store._lock:
            failed = [t for t in self._store._tasks.values() if t.group == group and t.status is Status.FAILED]
        return min(len(failed), cap)

    def oldest_queued(self, sample: int = 100) -> dict[tuple[str, Priority], datetime]:
        """The earliest ``queued_at`` of each pool's and priority's queued tasks (all of them: no sampling here)."""
        oldest: dict[tuple[str, Priority], datetime] = {}
        with self._store._lock:
            for task in self._store._tasks.values():
                if task.status is Status.QUEUED and task.queued_at is not None:
                    queue = (task.pool, task.priority)
                    oldest[queue] = min(oldest.get(queue, task.queued_at), task.queued_at)
        return oldest


class InMemoryApiKeyStore:
    """API key records and token hashes in a dict."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[ApiKey, str]] = {}
        #: How many ``find`` calls reached the store (to see what a cache saves).
        self.finds = 0

    def add(self, key: ApiKey, token_hash: str) -> None:
        """Store a new key; ``ValueError`` if the id is taken."""
        if key.key_id in self._keys:
            raise ValueError(f"API key id {key.key_id} already exists")
        self._keys[key.key_id] = (key, token_hash)

    def find(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its hash, if any."""
        self.finds += 1
        return self._keys.get(key_id)

    def all(self) -> list[ApiKey]:
        """Every key, oldest first."""
        return sorted((key for key, _ in self._keys.values()), key=lambda key: (key.created_at, key.key_id))

    def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        """Revoke unless already revoked; ``None`` if unknown."""
        if key_id not in self._keys:
            return None
        key, token_hash = self._keys[key_id]
        if key.revoked_at is None:
            key = replace(key, revoked_at=at)
            self._keys[key_id] = (key, token_hash)
        return key
