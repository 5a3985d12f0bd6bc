"""The alert rules keep the house rules: severity, summary, a runbook that exists, tests both ways, known metrics.

`make alerts` runs promtool and amtool themselves; these checks need no binary and run with the unit tier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.metrics_contract import COUNTERS, GAUGES, HISTOGRAMS, SERIES, metrics_in, recorded_in

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "ops" / "alerts"
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/tq-project/tq/blob/main/docs/runbooks/"
SEVERITIES = {"page", "ticket"}


def rules() -> list[dict[str, Any]]:
    """Every rule (recording and alerting) of every rule file."""
    return [
        rule
        for path in sorted((ALERTS / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


ALERT_RULES = [rule for rule in rules() if "alert" in rule]
ALERT_NAMES = sorted({rule["alert"] for rule in ALERT_RULES})


def alert_cases() -> list[tuple[str, bool]]:
    """(alert name, whether it is expected to fire) for every ``alert_rule_test`` of every promtool test file."""
    return [
        (case["alertname"], bool(case.get("exp_alerts")))
        for path in sorted((ALERTS / "tests").glob("*.yml"))
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def test_the_issue_s_alerts_are_all_there() -> None:
    assert set(ALERT_NAMES) >= {
        "TqTaskErrorRateHigh",
        "TqQueueDepthHigh",
        "TqOldestQueuedTaskTooOld",
        "TqDeadLetterQueueNotEmpty",
        "TqSchedulerLagging",
        "TqNoExecutorAlive",
        "TqSubmitFastBudgetBurn",
        "TqSubmitSlowBudgetBurn",
    }
    assert len(ALERT_NAMES) == len(ALERT_RULES), "one rule per alert name"


@pytest.mark.parametrize("rule", ALERT_RULES, ids=[rule["alert"] for rule in ALERT_RULES])
def test_each_alert_has_a_severity_a_summary_and_a_runbook_that_exists(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    assert annotations["description"].strip()
    url = annotations["runbook_url"]
    assert url == f"{RUNBOOK_BASE}{rule['alert']}.md"
    assert (RUNBOOKS / f"{rule['alert']}.md").is_file()


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_each_alert_has_a_promtool_case_where_it_fires_and_one_where_it_stays_quiet(name: str) -> None:
    expectations = {fires for alert, fires in alert_cases() if alert == name}
    assert expectations == {True, False}


def test_rules_read_only_contract_metrics_and_recording_rules_that_exist() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        assert metrics_in(rule["expr"]) <= SERIES, rule["expr"]
        assert recorded_in(rule["expr"]) <= recorded, rule["expr"]


def test_every_contract_metric_is_documented() -> None:
    documented = metrics_in((ROOT / "docs" / "OBSERVABILITY.md").read_text())
    assert not (COUNTERS | GAUGES | HISTOGRAMS) - documented


def test_every_severity_routes_to_a_receiver_of_its_own() -> None:
    config = yaml.safe_load((ALERTS / "alertmanager.yml").read_text())
    receivers = {receiver["name"] for receiver in config["receivers"]}
    routed = {
        matcher.removeprefix("severity=").strip('"'): route["receiver"]
        for route in config["route"]["routes"]
        for matcher in route["matchers"]
        if matcher.startswith("severity=")
    }
    assert routed == {"page": "page", "ticket": "ticket"}
    assert config["route"]["receiver"] in receivers
