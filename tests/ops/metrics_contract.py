"""The metric names services export, for checking what rules and dashboards query."""

from __future__ import annotations

import re

# Mirrors the metric tables of docs/OBSERVABILITY.md (the observability contract): keep both in step
# (test_alert_rules checks each name here is documented there).
COUNTERS = {
    "tq_aws_calls_total",
    "tq_dynamodb_throttles_total",
    "tq_http_requests_total",
    "tq_tasks_submitted_total",
    "tq_rate_limited_total",
    "tq_tasks_succeeded_total",
    "tq_tasks_failed_total",
    "tq_tasks_retried_total",
    "tq_tasks_dead_lettered_total",
    "tq_tasks_cancelled_total",
    "tq_scheduler_actions_total",
    "tq_schedule_slots_skipped_total",
    "tq_lease_reclaims_total",
    "tq_resends_total",
}
HISTOGRAMS = {
    "tq_http_request_duration_seconds",
    "tq_submit_duration_seconds",
    "tq_queue_wait_seconds",
    "tq_run_duration_seconds",
    "tq_scheduler_lag_seconds",
}
GAUGES = {
    "tq_attempts_in_progress",
    "tq_scheduler_last_pass_timestamp_seconds",
    "tq_queue_depth",
    "tq_queue_in_flight",
    "tq_dlq_depth",
    "tq_oldest_queued_task_age_seconds",
    "tq_dead_lettered_tasks",
    "tq_replicas_alive",
}
#: Every series name a query may use: histograms through their ``_bucket``, ``_sum`` and ``_count`` series.
SERIES = COUNTERS | GAUGES | {f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}

METRIC = re.compile(r"\btq_[a-z_]+")
RECORDED = re.compile(r"\btq:[a-z0-9_:]+")


def metrics_in(expr: str) -> set[str]:
    """The ``tq_*`` series names a PromQL expression reads."""
    return set(METRIC.findall(expr))


def recorded_in(expr: str) -> set[str]:
    """The recording-rule names (``tq:...``) a PromQL expression reads."""
    return set(RECORDED.findall(expr))
