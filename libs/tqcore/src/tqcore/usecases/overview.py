"""The overview: the whole system at a glance (``GET /v1/overview``, the console's ``/ui/``).

Queues come from SQS's approximate counts (as ``/v1/queues``), the age of each queue's longest-waiting task from
the table's ``reap`` index (as the reaper's gauge: SQS keeps that age only in CloudWatch), live instances and what
they did lately from the presence registry (``tqcore.activity``), dead letters from the ``dlq`` index, per group.
Queues, instances and activity are totals over every group and name no task (any caller may read them, as
``/v1/queues``); dead letters are counted for the caller's groups only.

A read costs a registry query, the queue attributes, the ``reap`` index walk and a count per group, made at once
(they do not depend on each other); each gateway process reuses it for ``cache_s`` (the counts move every few
seconds anyway: heartbeats are 5 s apart).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar, cast

from tqcore.activity import WINDOW_MINUTES, Activity
from tqcore.domain.access import Principal
from tqcore.domain.model import Priority
from tqcore.listing import listed_groups
from tqcore.ports import Clock, LiveInstance, ManagedQueue, Registry
from tqcore.queries import TaskQueries

T = TypeVar("T")

#: Services whose live replicas the overview counts (zero when none is alive).
SERVICES = ("gateway", "executor", "scheduler", "reaper")
#: Threads per process for an overview's independent reads (each a round trip to DynamoDB or SQS).
READ_THREADS = 4
#: The scheduler's lag is the latest slot it fired in the last minutes (a minute's lag: its latest slot).
LAG_MINUTES = 5


@dataclass(frozen=True)
class QueueState:
    """One pool's queue of one priority."""

    pool: str
    priority: Priority
    name: str
    depth: int
    in_flight: int
    dlq_depth: int
    #: When its longest-waiting ``queued`` task was queued (``None``: none waits).
    oldest_queued_at: datetime | None


@dataclass(frozen=True)
class PoolState:
    """An executor pool: its live executors (those whose heartbeat names the pool) and its queues."""

    name: str
    executors: int
    queues: tuple[QueueState, ...]


@dataclass(frozen=True)
class Minute:
    """What the live instances did in one minute: attempts finished, runs the scheduler fired and how late."""

    start: datetime
    succeeded: int
    failed: int
    fired: int
    lag_s: float


@dataclass(frozen=True)
class SchedulerState:
    """The scheduler replicas' lag: how late the latest slot fired in the last :data:`LAG_MINUTES` was (``None``:
    none fired), and when the stalest live replica last finished a pass (``None``: none reported one)."""

    lag_s: float | None
    last_pass_at: datetime | None


@dataclass(frozen=True)
class Overview:
    """The system at ``at``."""

    at: datetime
    pools: tuple[PoolState, ...]
    #: Live replicas per service.
    replicas: dict[str, int]
    #: The last :data:`WINDOW_MINUTES` minutes, oldest first (the last one under way).
    minutes: tuple[Minute, ...]
    scheduler: SchedulerState
    #: Failed tasks awaiting redrive, per group of the caller (capped by the store's count cap).
    dead_letters: dict[str, int]


@dataclass(frozen=True)
class _System:
    """The part of an overview that is the same for every caller."""

    pools: tuple[PoolState, ...]
    replicas: dict[str, int]
    minutes: tuple[Minute, ...]
    scheduler: SchedulerState


class SystemOverview:
    """Assembles an :class:`Overview` for a caller; the system-wide part and each group's count cached ``cache_s``."""

    def __init__(
        self,
        queue: ManagedQueue,
        queries: TaskQueries,
        registry: Registry,
        clock: Clock,
        *,
        pools: Callable[[], list[str]],
        every_group: Callable[[], list[str]] | None = None,
        cache_s: float = 5.0,
        ticks: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue = queue
        self._queries = queries
        self._registry = registry
        self._clock = clock
        self._pools = pools
        self._every_group = every_group
        self._cache_s = cache_s
        self._ticks = ticks
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[float, object]] = {}  # key -> (when read, answer)
        #: Runs the reads that do not wait on others (never one that waits on another: no read can starve).
        self._reads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="overview")

    def read(self, principal: Principal) -> Overview:
        """The overview as ``principal`` may see it (dead letters of their groups; an admin's: every group's).
        Its reads are round trips that do not depend on each other: they run at once, on the reads' threads."""
        groups = listed_groups(None, principal, "overview", self._every_group)
        counts = {
            group: self._reads.submit(self._fresh, f"dlq#{group}", partial(self._queries.dead_letter_count, group))
            for group in groups
        }
        system = self._fresh("system", self._system)
        return Overview(
            at=self._clock.now(),
            pools=system.pools,
            replicas=system.replicas,
            minutes=system.minutes,
            scheduler=system.scheduler,
            dead_letters={group: count.result() for group, count in counts.items()},
        )

    def _fresh(self, key: str, read: Callable[[], T]) -> T:
        """``read()``, or its answer of less than ``cache_s`` ago (the lock is never held across the read)."""
        with self._lock:
            found = self._cached.get(key)
        if found is not None and self._ticks() - found[0] < self._cache_s:
            return cast(T, found[1])
        value = read()
        with self._lock:
            self._cached[key] = (self._ticks(), value)
        return value

    def _system(self) -> _System:
        """The system-wide part: presence, the ``reap`` walk and the queues' depths read at once (on the reads'
        threads and this one; a pool only executors report, no type being registered in it yet, is read after)."""
        now = self._clock.now()
        live_instances = self._reads.submit(self._registry.instances)
        oldest_queued = self._reads.submit(self._queries.oldest_queued)
        catalog = self._pools()
        depths = self._queue.depths(catalog)
        instances = live_instances.result()
        executors: dict[str, int] = {}
        for live in instances:
            if live.service == "executor" and live.activity is not None and live.activity.pool is not None:
                executors[live.activity.pool] = executors.get(live.activity.pool, 0) + 1
        if extra := sorted(set(executors) - set(catalog)):
            depths += self._queue.depths(extra)
        names = [*catalog, *extra]
        oldest = oldest_queued.result()
        queues = [
            QueueState(d.pool, d.priority, d.name, d.depth, d.in_flight, d.dlq_depth, oldest.get((d.pool, d.priority)))
            for d in depths
        ]
        pools = tuple(
            PoolState(name, executors.get(name, 0), tuple(q for q in queues if q.pool == name)) for name in names
        )
        replicas = {service: sum(live.service == service for live in instances) for service in SERVICES}
        minutes = _minutes(now, instances)
        return _System(pools, replicas, minutes, _scheduler(minutes, instances))


def _minutes(now: datetime, instances: list[LiveInstance]) -> tuple[Minute, ...]:
    """The last minutes' totals over every live instance that reported activity."""
    reported = [live.activity for live in instances if live.activity is not None]
    current = int(now.timestamp() // 60)
    return tuple(_minute(minute, reported) for minute in range(current - WINDOW_MINUTES + 1, current + 1))


def _minute(minute: int, reported: list[Activity]) -> Minute:
    return Minute(
        start=datetime.fromtimestamp(minute * 60, UTC),
        succeeded=int(sum(a.per_minute(a.succeeded, minute) for a in reported)),
        failed=int(sum(a.per_minute(a.failed, minute) for a in reported)),
        fired=int(sum(a.per_minute(a.fired, minute) for a in reported)),
        lag_s=max((a.per_minute(a.lag_s, minute) for a in reported), default=0.0),
    )


def _scheduler(minutes: tuple[Minute, ...], instances: list[LiveInstance]) -> SchedulerState:
    """The latest fired slot's lateness over the last minutes, and the stalest scheduler replica's last pass."""
    recent = [m for m in minutes[-LAG_MINUTES:] if m.fired]
    passes = [
        live.activity.pass_at
        for live in instances
        if live.service == "scheduler" and live.activity is not None and live.activity.pass_at is not None
    ]
    last_pass = None if not passes else datetime.fromtimestamp(min(passes), UTC)
    return SchedulerState(lag_s=recent[-1].lag_s if recent else None, last_pass_at=last_pass)


def age_s(since: datetime | None, at: datetime) -> float | None:
    """Seconds from ``since`` to ``at`` (never negative; ``None`` if ``since`` is)."""
    return None if since is None else max(0.0, (at - since).total_seconds())
