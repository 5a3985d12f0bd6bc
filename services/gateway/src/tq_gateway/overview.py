"""``GET /v1/overview``: the whole system at a glance, as the console's overview shows it (nothing it shows that the
API does not)."""

from __future__ import annotations

from typing import Any

import falcon

from tqcore.domain.codec import ts
from tqcore.usecases.overview import Overview, QueueState, SystemOverview, age_s


class OverviewResource:
    """``/v1/overview``: queues and pools, live replicas, throughput, scheduler lag; dead letters of the caller's
    groups. Any authenticated caller may read it: apart from the dead letters it is totals over every group."""

    def __init__(self, overview: SystemOverview) -> None:
        self._overview = overview

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The overview as the caller may see it."""
        resp.media = overview_to_dict(self._overview.read(req.context.principal))


def overview_to_dict(overview: Overview) -> dict[str, Any]:
    """The JSON answer: ages in seconds as of ``at``."""
    at = overview.at
    return {
        "at": ts(at),
        "pools": [
            {"name": pool.name, "executors": pool.executors, "queues": [_queue(q, overview) for q in pool.queues]}
            for pool in overview.pools
        ],
        "replicas": dict(overview.replicas),
        "throughput": [
            {
                "minute": ts(minute.start),
                "succeeded": minute.succeeded,
                "failed": minute.failed,
                "fired": minute.fired,
                "lag_s": minute.lag_s,
            }
            for minute in overview.minutes
        ],
        "scheduler": {
            "lag_s": overview.scheduler.lag_s,
            "last_pass_age_s": age_s(overview.scheduler.last_pass_at, at),
        },
        "dead_letters": dict(overview.dead_letters),
    }


def _queue(queue: QueueState, overview: Overview) -> dict[str, Any]:
    return {
        "name": queue.name,
        "pool": queue.pool,
        "priority": queue.priority.value,
        "depth": queue.depth,
        "in_flight": queue.in_flight,
        "dlq_depth": queue.dlq_depth,
        "oldest_age_s": age_s(queue.oldest_queued_at, overview.at),
    }
