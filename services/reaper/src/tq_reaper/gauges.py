"""Gauges of the whole system, read from AWS when Prometheus scrapes the reaper (at most every ``ttl_s``).

SQS keeps no age of its oldest message outside CloudWatch, and tq's DLQ is a set of ``failed`` tasks, so
both come from the table's indexes. Every reaper replica reports the same values: alert on ``max()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tqcore.domain.model import Priority
from tqcore.pools import pools_in_use
from tqcore.ports import Clock, ManagedQueue, Registry
from tqcore.queries import TaskQueries

log = logging.getLogger(__name__)

#: Services whose live replicas are reported (zero when none is alive).
SERVICES = ("gateway", "executor", "scheduler", "reaper")


class SystemGauges(Collector):
    """Queue depths, the oldest queued task's age, dead letters per group and live replicas per service.

    One read costs a ``Query`` of the catalog (which pools), 2 ``GetQueueAttributes`` per pool and priority, a
    ``Query`` per re-send shard and bucket, one per group and two for the group and presence lists; a scrape within
    ``ttl_s`` of the last read is answered from it. Queue gauges carry ``pool`` and ``priority`` labels: a pool's
    depth is what its autoscaling and alerts follow.
    """

    def __init__(
        self, queue: ManagedQueue, queries: TaskQueries, registry: Registry, clock: Clock, *, ttl_s: float = 10.0
    ) -> None:
        self._queue = queue
        self._queries = queries
        self._registry = registry
        self._clock = clock
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._metrics: list[Metric] = []

    def collect(self) -> Iterator[Metric]:
        """The gauges, read again if the last read is older than ``ttl_s`` (nothing if that read fails)."""
        with self._lock:  # one read at a time: concurrent scrapes share it
            if time.monotonic() - self._read_at >= self._ttl_s:
                self._read_at = time.monotonic()
                try:
                    self._metrics = self._read()
                except Exception:  # a scrape must answer; the gauges go missing, which alerts can see
                    log.warning("could not read the system gauges", exc_info=True)
                    self._metrics = []
            yield from self._metrics

    def _read(self) -> list[Metric]:
        labels = ["priority", "pool"]
        depth = GaugeMetricFamily("tq_queue_depth", "Messages waiting in a pool's queue of a priority.", labels=labels)
        in_flight = GaugeMetricFamily(
            "tq_queue_in_flight", "Messages received from a pool's queue of a priority, not yet deleted.", labels=labels
        )
        dlq = GaugeMetricFamily(
            "tq_dlq_depth",
            "Visible messages in a pool's SQS dead-letter queue of a priority (dead-lettered tasks' records, poison"
            " messages).",
            labels=labels,
        )
        for queue in self._queue.depths(pools_in_use(self._registry)):
            depth.add_metric([queue.priority.value, queue.pool], queue.depth)
            in_flight.add_metric([queue.priority.value, queue.pool], queue.in_flight)
            dlq.add_metric([queue.priority.value, queue.pool], queue.dlq_depth)
        oldest = GaugeMetricFamily(
            "tq_oldest_queued_task_age_seconds",
            "Seconds the longest-waiting queued task has waited (0: none queued).",
            labels=["priority"],
        )
        now = self._clock.now()
        queued_since: dict[Priority, datetime] = {}
        for (_, priority), at in self._queries.oldest_queued().items():  # the oldest of a priority in any pool
            queued_since[priority] = min(queued_since.get(priority, at), at)
        for priority in Priority:
            since = queued_since.get(priority)
            oldest.add_metric([priority.value], 0.0 if since is None else max(0.0, (now - since).total_seconds()))
        dead = GaugeMetricFamily(
            "tq_dead_lettered_tasks", "Tasks in tq's DLQ (failed, awaiting redrive), by group.", labels=["group"]
        )
        for group in sorted(self._registry.groups()):
            dead.add_metric([group], self._queries.dead_letter_count(group))
        replicas = GaugeMetricFamily(
            "tq_replicas_alive", "Live replicas by service, from the presence registry.", labels=["service"]
        )
        alive = self._registry.alive()
        for service in SERVICES:
            replicas.add_metric([service], len(alive.get(service, [])))
        return [depth, in_flight, dlq, oldest, dead, replicas]
