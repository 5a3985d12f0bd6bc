"""The scheduler: each pass queues the due tasks of the minute buckets it has not finished."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from tqcore.adapters.dynamodb.keys import minute_bucket
from tqcore.ports import Clock, TaskQueue, TaskStore
from tqcore.service import promote_due

log = logging.getLogger(__name__)


class Scheduler:
    """Promotes due tasks; holds its dependencies and a low-water mark of unfinished buckets."""

    def __init__(self, store: TaskStore, queue: TaskQueue, clock: Clock, *, shards: int, catchup_s: int) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self._shards = shards
        self._low_water = clock.now() - timedelta(seconds=catchup_s)

    def run_once(self) -> int:
        """One pass over every bucket from the low-water mark to now; how many tasks were queued."""
        now = self._clock.now()
        promoted = promote_due(
            self._store, self._queue, self._clock, buckets=buckets_between(self._low_water, now), shards=self._shards
        )
        # Keep the previous minute: a task can become due in it just before the minute turns.
        self._low_water = now - timedelta(minutes=1)
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
