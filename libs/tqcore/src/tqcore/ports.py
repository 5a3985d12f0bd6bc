"""The ports the application talks through; adapters in ``tqcore.adapters`` implement them."""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from tqcore.activity import Activity
from tqcore.dispatch import Dispatch
from tqcore.domain.access import ApiKey
from tqcore.domain.model import Event, Priority, Progress
from tqcore.domain.task import Task
from tqcore.settings import DEFAULT_POOL


@dataclass(frozen=True)
class IdempotencyRecord:
    """Which task an idempotency key in a group produced, and the fingerprint of the request."""

    group: str
    key: str
    fingerprint: str
    task_id: str


@dataclass(frozen=True)
class LeaseRecord:
    """Who holds which claim of a running task, until when."""

    task_id: str
    claim_seq: int
    worker: str
    expires_at: datetime
    #: Set with the task's ``cancel_requested`` event, so the next heartbeat tells the attempt to stop.
    cancel_requested: bool = False


class LeaseState(enum.Enum):
    """What a heartbeat found when it extended an attempt's lease."""

    HELD = "held"  #: extended; carry on
    CANCEL_REQUESTED = "cancel_requested"  #: extended, but the task's cancel was requested: stop the attempt
    LOST = "lost"  #: the claim no longer holds the lease (reclaimed, redriven): stop without recording


@dataclass(frozen=True)
class DeadLetter:
    """A message found in a dead-letter queue: whose task it names (its group id) and how often SQS
    delivered it before giving up; ``dispatch`` is ``None`` when the body cannot be decoded. ``record`` marks
    the record tq itself leaves for a task that ran out of retries (not a message SQS moved there)."""

    priority: Priority
    receipt: str
    task_id: str | None
    receives: int
    dispatch: Dispatch | None
    record: bool = False
    #: The pool whose dead-letter queue held it.
    pool: str = DEFAULT_POOL


@dataclass(frozen=True)
class QueueDepth:
    """One priority's queue of one pool as ``GET /v1/queues`` shows it (SQS's approximate counts)."""

    name: str
    priority: Priority
    depth: int
    in_flight: int
    dlq_depth: int
    pool: str = DEFAULT_POOL


@dataclass(frozen=True)
class TypeInfo:
    """A task type in the catalog: the pool whose executors serve it and what they publish with it."""

    name: str
    pool: str = DEFAULT_POOL
    #: The published spec (JSON; the ``script`` type's allow-list), ``None`` if none.
    spec: str | None = None
    #: Submit fields the handler declares as defaults (``{"retry": {"max_retries": 3}, "timeout_s": 60, ...}``).
    defaults: Mapping[str, Any] = field(default_factory=dict)
    #: The JSON schema a payload must satisfy, ``None`` if the handler declares no model.
    payload_schema: Mapping[str, Any] | None = None
    #: The executor that registered it last (``<host>:<pid>``), and when (Unix seconds); empty in fakes.
    registered_by: str = ""
    registered_at: int = 0


@dataclass(frozen=True)
class LiveInstance:
    """A live instance of a service as its last heartbeat described it."""

    service: str
    name: str
    #: What it did lately (``None``: its heartbeats carry none, e.g. a gateway, or one written before they did).
    activity: Activity | None = None


class DuplicateRequest(Exception):
    """Raised by :meth:`TaskStore.create` when the idempotency key is already taken."""

    def __init__(self, record: IdempotencyRecord) -> None:
        super().__init__(f"idempotency key {record.key!r} already used in {record.group!r}")
        self.record = record


class Clock(Protocol):
    """Tells the time (UTC); injected so tests can fix it."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class TaskStore(Protocol):
    """Durable tasks: a snapshot plus its append-only events, committed together."""

    def create(self, task: Task, idempotency: IdempotencyRecord | None = None) -> None:
        """Persist a new task and its pending events (and the idempotency record) atomically."""
        ...

    def create_many(self, new: Sequence[tuple[Task, IdempotencyRecord | None]]) -> list[Exception | None]:
        """:meth:`create` for each task on its own, in as few writes as the store allows: per task ``None``
        (created) or the error :meth:`create` would have raised for it (``DuplicateRequest``, ``VersionConflict``,
        ``TaskTooLarge``, ``StoreUnavailable``)."""
        ...

    def get(self, task_id: str) -> Task:
        """The current snapshot; raises ``TaskNotFound``."""
        ...

    def commit(self, task: Task, *, lease_expired_before: datetime | None = None) -> None:
        """Persist the task's pending events and snapshot if nobody else committed first.

        Raises ``VersionConflict`` (carrying the current task when known) if the stored version is not
        ``task.version - len(task.pending_events)``. The running attempt's lease is put or removed with it;
        with ``lease_expired_before`` (a reclaim) the lease must still be expired then, or ``LeaseHeld``.
        """
        ...

    def extend_lease(self, task_id: str, claim_seq: int, until: datetime) -> LeaseState:
        """Heartbeat: move claim ``claim_seq``'s lease to ``until``; whether it still holds it, and whether the
        task's cancel was requested meanwhile (one write, whatever the answer)."""
        ...

    def report_progress(self, task_id: str, claim_seq: int, report: Progress) -> bool:
        """Set the running attempt's progress without a new version or an event, if claim ``claim_seq`` still runs
        the task (False: it does not, and the report is dropped). A claim clears it; reads show it as
        ``Task.progress``."""
        ...

    def events(self, task_id: str, *, after_seq: int = 0, limit: int | None = None) -> list[Event]:
        """The task's events after ``after_seq``, oldest first: at most ``limit`` of them (``None``: all)."""
        ...

    def events_before(self, task_id: str, before_seq: int, limit: int) -> list[Event]:
        """At most ``limit`` of the task's events before ``before_seq``, newest first (history read backwards)."""
        ...

    def idempotency_record(self, group: str, key: str) -> IdempotencyRecord | None:
        """The live record for a key, if any."""
        ...

    def unclaimed(self, now: datetime) -> Iterator[Task]:
        """Queued tasks still unclaimed past their re-send deadline (before ``now``), oldest deadlines first.

        Like :meth:`lease_expired` and :meth:`overdue`, a read bounded by what is due: deadlines still ahead cost
        it nothing, and a task its caller failed to change is found again by the next read."""
        ...

    def lease_expired(self, now: datetime) -> Iterator[LeaseRecord]:
        """Leases that ran out before ``now``, oldest first."""
        ...

    def due(self, since: datetime, until: datetime, *, part: tuple[int, int] = (0, 1)) -> Iterator[Task]:
        """Tasks the scheduler must look at from ``since`` to before ``until`` (their ``wake_at``, never before
        their last write), oldest first within each of the store's own divisions. ``part = (k, n)``: only the
        ``k``-th of ``n`` stable parts of them (replicas read their own part first)."""
        ...

    def overdue(self, before: datetime) -> Iterator[Task]:
        """Due tasks that are not queued, due before ``before`` however long ago (the scheduler's sweep)."""
        ...


class RunLogStore(Protocol):
    """Where attempts' captured output is kept, named by task and claim (run ids repeat after a redrive)."""

    def put(self, task_id: str, claim_seq: int, body: bytes) -> None:
        """Store one attempt's log (already bounded by the caller)."""
        ...

    def get(self, task_id: str, claim_seq: int) -> bytes | None:
        """One attempt's log; ``None`` if it is not (or no longer) stored."""
        ...


class TaskQueue(Protocol):
    """Hands queued tasks to executors."""

    def send(self, task: Task) -> None:
        """Put a ``queued`` task on its pool's queue of its priority; the same enqueue sent twice is deduplicated."""
        ...

    def send_batch(self, tasks: Sequence[Task]) -> None:
        """:meth:`send` for many tasks in as few calls as the queue allows; raises ``QueueUnavailable`` if any
        could not be sent (the others were)."""
        ...

    def dead_letter(self, task: Task) -> None:
        """Leave a ``failed`` task's record in its priority's dead-letter queue."""
        ...


class ManagedQueue(TaskQueue, Protocol):
    """A task queue that also tells how full it is (what the gateway needs of the queues)."""

    def depths(self, pools: Sequence[str] = (DEFAULT_POOL,)) -> list[QueueDepth]:
        """Every priority's queue of each pool (pool by pool, highest priority first); raises ``QueueUnavailable``
        if SQS cannot answer."""
        ...


class DeadLetterInbox(Protocol):
    """Reads the dead-letter queues."""

    def receive(self, priority: Priority, *, hide_s: int, pool: str = DEFAULT_POOL) -> list[DeadLetter]:
        """Up to ten dead letters of one priority of one pool, hidden from other readers for ``hide_s`` seconds."""
        ...

    def discard(self, letter: DeadLetter) -> None:
        """Delete a dead letter that no longer stands for a failed task."""
        ...


class Registry(Protocol):
    """Which task types and groups exist and which service instances are alive."""

    def register_types(
        self,
        types: Sequence[str | TypeInfo],
        by: str,
        specs: Mapping[str, str] | None = None,
        *,
        alive: Collection[str] | None = None,
    ) -> None:
        """Record that executor ``by`` handles these types (a name alone: in the default pool, with its spec from
        ``specs`` if any). With ``alive`` (the live executors' ids) a type that another pool registered is taken
        over only if the executor that registered it is not among them: else ``TypeServedElsewhere``, and no type
        after it is registered."""
        ...

    def task_types(self) -> dict[str, TypeInfo]:
        """Every registered task type."""
        ...

    def add_group(self, group: str) -> None:
        """Record that tasks exist in ``group`` (idempotent)."""
        ...

    def groups(self) -> set[str]:
        """Every group tasks were submitted into."""
        ...

    def heartbeat(self, service: str, instance: str, ttl_s: int, activity: Activity | None = None) -> None:
        """Record that an instance of a service is alive for the next ``ttl_s`` seconds, with what it did lately."""
        ...

    def leave(self, service: str, instance: str) -> None:
        """Record that an instance stopped (so it stops counting as alive at once, not when its beat runs out)."""
        ...

    def alive(self) -> dict[str, list[str]]:
        """Live instances by service name."""
        ...

    def instances(self) -> list[LiveInstance]:
        """Live instances with the activity their last heartbeat carried, by service and name."""
        ...

    def mark(self, name: str) -> datetime | None:
        """A named high-water time shared by replicas (e.g. the scheduler's drained buckets), if set."""
        ...

    def advance_mark(self, name: str, to: datetime) -> None:
        """Move a named mark forward to ``to``; never backwards, whoever else moves it."""
        ...


class ApiKeyStore(Protocol):
    """API key records with the hash of each key's token (never the token)."""

    def add(self, key: ApiKey, token_hash: str) -> None:
        """Store a new key; its id must be new."""
        ...

    def find(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its token hash, if the id exists (revoked or not)."""
        ...

    def all(self) -> list[ApiKey]:
        """Every key (revoked ones too), oldest first; no hashes."""
        ...

    def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        """Mark a key revoked at ``at`` (an earlier revocation stands); the key, or ``None`` if unknown."""
        ...
