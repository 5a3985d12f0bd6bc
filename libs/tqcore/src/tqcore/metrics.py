"""Task metrics, counted from the events each commit records (the one place a task's life is written).

Every service counts what its own commits did: the gateway submits, executors succeed and fail, the reaper
reclaims lost leases (and fails or retries those attempts), the scheduler promotes. Sum a counter across jobs
in PromQL; see docs/OBSERVABILITY.md for the full list.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.registry import Collector

from tqcore.activity import ACTIVITY, ActivityTally
from tqcore.domain.model import Event, EventType
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings

log = logging.getLogger(__name__)

_BY_TASK = ["type", "priority"]
#: Seconds, from a few milliseconds to an hour: queue waits and run durations span all of it.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)

SUBMITTED = Counter("tq_tasks_submitted_total", "Tasks accepted (idempotent replays not counted).", _BY_TASK)
SUCCEEDED = Counter("tq_tasks_succeeded_total", "Attempts that succeeded.", _BY_TASK)
FAILED = Counter("tq_tasks_failed_total", "Attempts that failed (raised, timed out or lost), retried or not.", _BY_TASK)
RETRIED = Counter("tq_tasks_retried_total", "Failed attempts that will be retried.", _BY_TASK)
DEAD_LETTERED = Counter("tq_tasks_dead_lettered_total", "Runs that failed for good (into tq's DLQ).", _BY_TASK)
CANCELLED = Counter("tq_tasks_cancelled_total", "Tasks cancelled.", _BY_TASK)
LEASE_RECLAIMS = Counter("tq_lease_reclaims_total", "Expired leases reclaimed (the attempt counts as lost).")
RESENDS = Counter("tq_resends_total", "Queued tasks sent again because no executor claimed them in time.")
QUEUE_WAIT = Histogram(
    "tq_queue_wait_seconds", "From queued to claimed by an executor.", ["priority"], buckets=DURATION_BUCKETS
)
RUN_DURATION = Histogram(
    "tq_run_duration_seconds",
    "From claim to outcome, by outcome (succeeded, failed, cancelled).",
    ["type", "outcome"],
    buckets=DURATION_BUCKETS,
)
SCHEDULER_LAG = Histogram(
    "tq_scheduler_lag_seconds",
    "How late the scheduler queued a run or retry: queued time minus due time.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
)


def observe_commit(task: Task, events: Sequence[Event], activity: ActivityTally = ACTIVITY) -> None:
    """Count what the committed ``events`` of ``task`` did (and tally the attempts finished and slots fired in
    ``activity``, which the presence heartbeat carries to the overview)."""
    labels = (task.type, task.priority.value)
    for n, event in enumerate(events):
        kind = event.type
        if kind is EventType.SUBMITTED:
            SUBMITTED.labels(*labels).inc()
        elif kind is EventType.CLAIMED and task.queued_at is not None:
            QUEUE_WAIT.labels(task.priority.value).observe(max(0.0, (event.at - task.queued_at).total_seconds()))
        elif kind is EventType.SUCCEEDED:
            SUCCEEDED.labels(*labels).inc()
            activity.finished("succeeded")
            _run_duration(task.type, "succeeded", event)
        elif kind is EventType.FAILED:
            FAILED.labels(*labels).inc()
            activity.finished("failed")
            _run_duration(task.type, "failed", event)
            following = events[n + 1].type if n + 1 < len(events) else None
            if following in (EventType.RETRY_SCHEDULED, EventType.QUEUED):  # else dead-lettered or cancelled
                RETRIED.labels(*labels).inc()
        elif kind is EventType.DEAD_LETTERED:
            DEAD_LETTERED.labels(*labels).inc()
        elif kind is EventType.CANCELLED:
            CANCELLED.labels(*labels).inc()
            _run_duration(task.type, "cancelled", event)
        elif kind is EventType.LEASE_EXPIRED:
            LEASE_RECLAIMS.inc()
        elif kind is EventType.QUEUED:
            _queued(event, activity)


def _queued(event: Event, activity: ActivityTally) -> None:
    if "resend" in event.data:
        RESENDS.inc()
    due = event.data.get("scheduled_for")
    if event.actor == "scheduler" and due is not None:
        lag_s = max(0.0, (event.at - due).total_seconds())
        SCHEDULER_LAG.observe(lag_s)
        activity.fired(lag_s)


def _run_duration(task_type: str, outcome: str, event: Event) -> None:
    duration_ms = event.data.get("duration_ms")
    if duration_ms is not None:
        RUN_DURATION.labels(task_type, outcome).observe(duration_ms / 1000)


def serve_metrics(settings: CoreSettings, *collectors: Collector) -> None:
    """Serve ``/metrics`` on ``metrics_host:metrics_port`` from a daemon thread (not at all on port 0).

    Each process exposes its own registry: an executor's handler processes record nothing, and two
    processes on one host are two scrape targets, never one file-backed sum.
    """
    for collector in collectors:
        REGISTRY.register(collector)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host)
        log.info("serving /metrics on %s:%d", settings.metrics_host, settings.metrics_port)
