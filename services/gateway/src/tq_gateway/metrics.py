"""``/metrics`` (Prometheus text, aggregated across gunicorn workers) and the request metrics it serves."""

from __future__ import annotations

import os
import time
from typing import Any

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "tq_http_requests_total", "API requests answered, by route template and status code.", ["method", "route", "code"]
)
REQUEST_DURATION = Histogram(
    "tq_http_request_duration_seconds",
    "Time to answer an API request, by route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SUBMIT_DURATION = Histogram(
    "tq_submit_duration_seconds",
    "Time to accept a task (POST /v1/tasks answered 201).",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
)
CONNECTIONS_TIMED_OUT = Counter(
    "tq_http_connections_timed_out_total",
    "Connections closed for missing a deadline, by what they were at: handshake, head, body or response.",
    ["stage"],
)
WAITING_REQUESTS = Gauge(
    "tq_http_waiting_requests",
    "Requests holding one of the worker's wait slots: SSE streams (kind stream) and reads with wait_s (kind wait).",
    ["kind"],
    multiprocess_mode="livesum",
)
#: Requests that matched no route are counted under one label, whatever their path.
UNROUTED = "unrouted"


class RequestMetrics:
    """Counts and times every request by its route template (first middleware: sees every outcome)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started_s = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        elapsed_s = time.perf_counter() - getattr(req.context, "started_s", time.perf_counter())
        route = req.uri_template or UNROUTED
        code = falcon.http_status_to_code(resp.status)
        REQUESTS.labels(req.method, route, str(code)).inc()
        REQUEST_DURATION.labels(req.method, route).observe(elapsed_s)
        if route == "/v1/tasks" and req.method == "POST" and code == 201:
            SUBMIT_DURATION.observe(elapsed_s)


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
