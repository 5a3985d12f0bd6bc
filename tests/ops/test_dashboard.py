"""The Grafana dashboard is valid JSON whose every panel queries known metrics through the datasource variable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.metrics_contract import SERIES, metrics_in, recorded_in

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "dashboards" / "tq.json"


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def query_panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def recording_rules() -> set[str]:
    return {
        rule["record"]
        for path in (ROOT / "ops" / "alerts" / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def test_the_dashboard_picks_its_prometheus_datasource_from_a_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    variables = {var["name"]: var for var in board["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_every_panel_queries_contract_metrics_through_the_variable() -> None:
    recorded = recording_rules()
    for panel in query_panels():
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            assert metrics_in(expr) or recorded_in(expr), (panel["title"], expr)
            assert metrics_in(expr) <= SERIES, (panel["title"], expr)
            assert recorded_in(expr) <= recorded, (panel["title"], expr)


def test_the_issue_s_views_are_on_the_dashboard() -> None:
    queried = {name for panel in query_panels() for target in panel["targets"] for name in metrics_in(target["expr"])}
    assert {
        "tq_tasks_submitted_total",
        "tq_tasks_succeeded_total",
        "tq_tasks_failed_total",
        "tq_submit_duration_seconds_bucket",
        "tq_queue_wait_seconds_bucket",
        "tq_run_duration_seconds_bucket",
        "tq_queue_depth",
        "tq_queue_in_flight",
        "tq_dlq_depth",
        "tq_oldest_queued_task_age_seconds",
        "tq_http_requests_total",
        "tq_scheduler_lag_seconds_bucket",
    } <= queried
