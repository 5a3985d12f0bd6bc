"""``/metrics``: Prometheus text exposition, aggregated across gunicorn workers when multiprocess."""

from __future__ import annotations

import os

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess


class Metrics:
    """Serves every metric of this service (all worker processes when ``PROMETHEUS_MULTIPROC_DIR`` is set)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = REGISTRY
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(registry)
