"""Every metric the services' code defines is in docs/OBSERVABILITY.md's tables (the doc cannot fall behind)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tq_executor
import tq_gateway
import tq_reaper
import tq_scheduler
import tqcore

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
#: A metric's definition: a prometheus-client metric, or a collector's metric family, named by a literal.
DEFINED = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary|\w+MetricFamily)\(\s*\"(tq_[a-z0-9_]+)\"")
#: A metric table's first column: | `tq_...` |
DOCUMENTED = re.compile(r"^\| `(tq_[a-z0-9_]+)` \|", re.MULTILINE)


def defined_metrics() -> dict[str, Path]:
    """Metric name -> the source file that defines it, over tqcore and the four services."""
    found = {}
    for package in (tqcore, tq_gateway, tq_executor, tq_scheduler, tq_reaper):
        for path in Path(package.__path__[0]).rglob("*.py"):
            for name in DEFINED.findall(path.read_text()):
                found[name] = path
    return found


def test_the_scan_finds_the_metrics_of_every_service() -> None:
    names = defined_metrics()
    assert {"tq_tasks_submitted_total", "tq_http_requests_total", "tq_attempts_in_progress"} <= set(names)
    assert {"tq_scheduler_lag_seconds", "tq_queue_depth"} <= set(names)


def test_every_metric_defined_in_code_has_a_row_in_observability_md() -> None:
    documented = set(DOCUMENTED.findall((ROOT / "docs" / "OBSERVABILITY.md").read_text()))
    missing = {name: str(path.relative_to(ROOT)) for name, path in defined_metrics().items() if name not in documented}
    assert not missing, f"add a row to docs/OBSERVABILITY.md's metric table for {missing}"
