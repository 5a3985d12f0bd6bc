"""Prometheus and Alertmanager on loopback against a local stack: a dead letter reaches Alertmanager (issue 6, 3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import running_stack, wait_for_status
from tqdev.monitoring import Monitoring, MonitoringConfig
from tqdev.procs import wait_until
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

ALERT = "TqDeadLetterQueueNotEmpty"


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose reaper reads its gauges from AWS at every scrape (1 s) instead of every 10 s."""
    with running_stack(emulator, tmp_path_factory.mktemp("stack"), env={"TQ_GAUGES_TTL_S": "1"}) as started:
        yield started


@pytest.fixture(scope="module")
def monitoring(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    """Prometheus (scraping and evaluating every second) and Alertmanager, on free loopback ports."""
    config = MonitoringConfig(
        targets=stack.metrics_targets(),
        run_dir=Path(tmp_path_factory.mktemp("monitoring")),
        scrape_interval_s=1,
        evaluation_interval_s=1,
    )
    started = Monitoring(config)
    started.start()
    try:
        yield started
    finally:
        started.stop()


def dead_letter_alerts(monitoring: Monitoring, group: str) -> list[dict[str, Any]]:
    return [
        alert
        for alert in monitoring.alerts()
        if alert["labels"]["alertname"] == ALERT and alert["labels"].get("group") == group
    ]


def test_a_dead_lettered_task_raises_the_dlq_alert_at_alertmanager(
    client: Callable[[str], httpx.Client], monitoring: Monitoring
) -> None:
    # Given Prometheus scrapes every service of the stack, and the group has a task but no dead letter
    jobs = {"tq-gateway", "tq-executor", "tq-scheduler", "tq-reaper"}
    wait_until(lambda: {r["metric"]["job"] for r in monitoring.query("up == 1")} == jobs, 30, f"every job of {jobs} up")
    alice = client("alice")
    ok = alice.post("/v1/tasks", json={"type": "echo", "group": "team-a", "payload": {}}).json()["id"]
    wait_for_status(alice, ok, {"succeeded"})
    wait_until(lambda: monitoring.query('tq_dead_lettered_tasks{group="team-a"} == 0'), 30, "an empty DLQ for team-a")
    assert dead_letter_alerts(monitoring, "team-a") == []

    # When a task fails with no retry left
    body = {"type": "flaky", "group": "team-a", "payload": {"fail_times": 99}, "retry": {"max_retries": 0}}
    task_id = alice.post("/v1/tasks", json=body).json()["id"]
    wait_for_status(alice, task_id, {"failed"}, timeout_s=30)

    # Then the ticket-severity DLQ alert for its group arrives at Alertmanager within a minute
    wait_until(lambda: dead_letter_alerts(monitoring, "team-a"), 60, f"{ALERT} at Alertmanager", interval_s=0.5)
    (alert,) = dead_letter_alerts(monitoring, "team-a")
    assert alert["labels"]["severity"] == "ticket"
    assert alert["annotations"]["runbook_url"].endswith(f"/docs/runbooks/{ALERT}.md")
    assert alert["status"]["state"] == "active"
