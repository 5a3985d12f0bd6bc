"""The scheduler's use case: act on every task whose time has come, once, however many replicas run.

Each due task is changed by one conditional commit (``Task.on_due``): queued, expired, or (a repeating task
with a run under way) its due slot skipped, kept waiting or spawned. A replica that loses the race re-reads
the task, finds it no longer due, and moves on. Shards of the ``due`` index are drained in parallel, each
replica starting at a different shard, and queued tasks are sent to SQS in batches of ten.
"""

from __future__ import annotations

import copy
import logging
import random
from collections import Counter as Tally
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import Counter

from tqcore.domain.errors import IllegalTransition, QueueUnavailable, VersionConflict
from tqcore.domain.model import Event, EventType, Status
from tqcore.domain.task import Task
from tqcore.ports import Clock, TaskQueue, TaskStore
from tqcore.service import mutate

log = logging.getLogger(__name__)

#: SQS takes at most ten messages per batch.
SEND_BATCH = 10

SCHEDULER_ACTIONS = Counter(
    "tq_scheduler_actions_total", "Changes the scheduler made to due tasks, by the event recorded.", ["event"]
)
SLOTS_SKIPPED = Counter(
    "tq_schedule_slots_skipped_total",
    "Slots of repeating tasks that did not run: overlap (skip, or queue already full), catch_up (one run "
    "stood for several missed slots), starting_deadline (too late to start), expired.",
    ["reason"],
)


@dataclass
class Pass:
    """What one pass did, and when the earliest task it saw but left alone falls due."""

    events: Tally[str] = field(default_factory=Tally)
    next_wake: datetime | None = None

    @property
    def queued(self) -> int:
        """Runs and retries put on a queue."""
        return self.events[EventType.QUEUED.value]

    def merge(self, other: Pass) -> None:
        """Fold another shard's pass into this one."""
        self.events.update(other.events)
        self.wake(other.next_wake)

    def wake(self, at: datetime | None) -> None:
        """Remember ``at`` if it is the earliest wake-up seen."""
        if at is not None and (self.next_wake is None or at < self.next_wake):
            self.next_wake = at


class Promoter:
    """Drains the ``due`` index: one instance per scheduler process."""

    def __init__(
        self,
        store: TaskStore,
        queue: TaskQueue,
        clock: Clock,
        *,
        shards: int,
        starting_deadline_s: float,
        lookahead_s: float = 0.0,
        actor: str = "scheduler",
    ) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self._shards = shards
        self._deadline_s = starting_deadline_s
        self._lookahead = timedelta(seconds=lookahead_s)
        self._actor = actor
        self._first_shard = random.randrange(shards)  # noqa: S311 - replicas start on different shards
        self._pool = ThreadPoolExecutor(max_workers=shards, thread_name_prefix="promote")

    def run(self, buckets: list[str]) -> Pass:
        """Act on every task of ``buckets`` due by now; note the earliest one due within the look-ahead."""
        now = self._clock.now()
        order = [(self._first_shard + n) % self._shards for n in range(self._shards)]
        done = Pass()
        for shard_pass in self._pool.map(lambda shard: self._drain(buckets, shard, now), order):
            done.merge(shard_pass)
        return done

    def _drain(self, buckets: list[str], shard: int, now: datetime) -> Pass:
        done = Pass()
        outbox: list[Task] = []
        for bucket in buckets:
            for task in self._store.due(bucket, shard, now + self._lookahead):
                wake_at = task.wake_at
                if wake_at is None:
                    continue
                if wake_at > now:
                    done.wake(wake_at)
                    continue
                outbox += self._act(task, now, done)
                if len(outbox) >= SEND_BATCH:
                    self._send(outbox)
                    outbox = []
        self._send(outbox)
        return done

    def _act(self, task: Task, now: datetime, done: Pass) -> list[Task]:
        """Commit the task's due change; the tasks to send (it, and a spawned run)."""
        recorded: list[Event] = []

        def change(t: Task) -> None:
            t.on_due(now, starting_deadline_s=self._deadline_s, actor=self._actor)
            recorded[:] = t.pending_events

        try:
            spawned = copy.deepcopy(task).on_due(now, starting_deadline_s=self._deadline_s, actor=self._actor)
            # The spawned run exists before its parent moves past the slot, so a crash in between loses
            # nothing: the next pass spawns the same id again, and the store refuses the duplicate.
            fresh = spawned is not None and self._create(spawned)
            task = mutate(self._store, task, change)
        except IllegalTransition:
            return []  # another replica (or a user's change) got there first
        _count(recorded, done)
        out = [task] if task.status is Status.QUEUED and _queued(recorded) else []
        if spawned is not None and fresh:
            out.append(spawned.committed())
        return out

    def _create(self, task: Task) -> bool:
        try:
            self._store.create(task)
        except VersionConflict:
            return False  # already spawned by another pass or replica
        return True

    def _send(self, tasks: Iterable[Task]) -> None:
        batch = list(tasks)
        if not batch:
            return
        try:
            self._queue.send_batch(batch)
        except QueueUnavailable:
            # Durable and queued: the reaper re-sends tasks left queued (docs/ARCHITECTURE.md).
            log.warning("enqueue of %d tasks failed; the reaper will re-send them", len(batch), exc_info=True)

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=True)


def _queued(events: list[Event]) -> bool:
    return any(e.type is EventType.QUEUED for e in events)


def _count(events: list[Event], done: Pass) -> None:
    for event in events:
        done.events[event.type.value] += 1
        SCHEDULER_ACTIONS.labels(event.type.value).inc()
        if event.type is EventType.RUN_SKIPPED:
            SLOTS_SKIPPED.labels(str(event.data.get("reason"))).inc(int(event.data.get("count", 1)))


def promote_due(
    store: TaskStore,
    queue: TaskQueue,
    clock: Clock,
    *,
    buckets: list[str],
    shards: int,
    starting_deadline_s: float = 3600,
    actor: str = "scheduler",
) -> int:
    """One pass of a throwaway :class:`Promoter` over ``buckets``; how many runs and retries were queued."""
    promoter = Promoter(store, queue, clock, shards=shards, starting_deadline_s=starting_deadline_s, actor=actor)
    try:
        return promoter.run(buckets).queued
    finally:
        promoter.close()
