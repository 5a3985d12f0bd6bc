"""The scheduler: each pass queues the due tasks of every minute bucket it has not yet drained."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from tqcore.adapters.dynamodb.keys import minute_bucket
from tqcore.ports import Clock, Registry, TaskQueue, TaskStore
from tqcore.service import promote_due

log = logging.getLogger(__name__)

#: The shared mark: every minute bucket before it has been drained by some scheduler replica.
MARK = "scheduler-drained-until"
#: Every so often a pass also walks this far behind the mark: a belt-and-braces sweep for due work that
#: reached an already drained bucket late (an index that lagged, a clock that was behind).
SWEEP_BACK = timedelta(minutes=15)
SWEEP_EVERY_S = 60.0


class Scheduler:
    """Promotes due tasks. Holds its dependencies and the low-water mark of undrained buckets.

    The mark lives in the table, so a scheduler that was down for a day resumes where it left off (not
    only ``catchup_s`` back), and replicas share it. ``catchup_s`` only bounds the look-back of a brand-new
    deployment, which has no mark yet.
    """

    def __init__(
        self, store: TaskStore, queue: TaskQueue, registry: Registry, clock: Clock, *, shards: int, catchup_s: int
    ) -> None:
        self._store = store
        self._queue = queue
        self._registry = registry
        self._clock = clock
        self._shards = shards
        self._catchup_s = catchup_s
        self._low_water: datetime | None = None
        self._swept_at: datetime | None = None

    def run_once(self) -> int:
        """One pass over every bucket from the low-water mark to now; how many tasks were queued."""
        now = self._clock.now()
        if self._low_water is None:
            self._low_water = self._registry.mark(MARK) or now - timedelta(seconds=self._catchup_s)
        start = self._low_water
        if self._swept_at is None or (now - self._swept_at).total_seconds() >= SWEEP_EVERY_S:
            start = min(start, now - SWEEP_BACK)
            self._swept_at = now
        promoted = promote_due(
            self._store, self._queue, self._clock, buckets=buckets_between(start, now), shards=self._shards
        )
        # Every bucket was walked to its end (an error would have raised). Keep the previous minute open: a
        # task can become due in it just before the minute turns.
        drained = (now - timedelta(minutes=1)).replace(second=0, microsecond=0)
        if drained > self._low_water:
            self._low_water = drained
            self._registry.advance_mark(MARK, drained)
        if promoted:
            log.info("queued %d due tasks", promoted)
        return promoted


def buckets_between(start: datetime, end: datetime) -> list[str]:
    """Minute buckets from ``start``'s to ``end``'s, inclusive."""
    buckets = []
    at = start.replace(second=0, microsecond=0)
    while at <= end:
        buckets.append(minute_bucket(at))
        at += timedelta(minutes=1)
    return buckets
