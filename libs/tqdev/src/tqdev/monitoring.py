"""Prometheus and Alertmanager on loopback, scraping a local stack and evaluating the repo's alert rules."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml  # type: ignore[import-untyped]

from tqdev.procs import Proc, free_port, wait_until

#: ``ops/alerts`` of this checkout (rules, tests, alertmanager.yml).
ALERTS_DIR = Path(__file__).resolve().parents[4] / "ops" / "alerts"
#: Debian's binary names (``scripts/install-monitoring.sh`` installs them).
PROMETHEUS = "prometheus"
ALERTMANAGER = "prometheus-alertmanager"


@dataclass
class MonitoringConfig:
    """What to scrape, how often, and where notifications go."""

    #: Scrape targets by job, e.g. ``Stack.metrics_targets()``: ``{"tq-gateway": ["127.0.0.1:8080"], ...}``.
    targets: dict[str, list[str]]
    run_dir: Path
    scrape_interval_s: float = 15
    evaluation_interval_s: float = 15
    #: Every receiver of ``alertmanager.yml`` becomes a webhook to this URL (none: notifications go nowhere).
    webhook_url: str | None = None
    alerts_dir: Path = ALERTS_DIR


def duration(seconds: float) -> str:
    """A Prometheus duration (``1500ms``) for a number of seconds."""
    return f"{round(seconds * 1000)}ms"


def prometheus_config(config: MonitoringConfig, alertmanager: str) -> dict[str, Any]:
    """prometheus.yml: the stack's jobs, the repo's rule files, and the local Alertmanager (``host:port``)."""
    return {
        "global": {
            "scrape_interval": duration(config.scrape_interval_s),
            # A scrape may not outlast its interval (Prometheus refuses the config otherwise).
            "scrape_timeout": duration(min(config.scrape_interval_s, 10)),
            "evaluation_interval": duration(config.evaluation_interval_s),
        },
        "rule_files": [str(config.alerts_dir / "rules" / "*.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": hosts}]} for job, hosts in sorted(config.targets.items())
        ],
    }


def alertmanager_config(source: dict[str, Any], webhook_url: str | None) -> dict[str, Any]:
    """``source`` (alertmanager.yml) with its route tree intact and every receiver a webhook to ``webhook_url``."""
    webhook = {"webhook_configs": [{"url": webhook_url, "send_resolved": True}]} if webhook_url else {}
    receivers = [{"name": receiver["name"], **webhook} for receiver in source["receivers"]]
    return {**source, "receivers": receivers}


class Monitoring:
    """Starts and stops one Prometheus and one Alertmanager, each on a free loopback port."""

    def __init__(self, config: MonitoringConfig) -> None:
        self.config = config
        self.prometheus_port = free_port()
        self.alertmanager_port = free_port()
        self.procs: list[Proc] = []

    @property
    def prometheus_url(self) -> str:
        """Prometheus's base URL."""
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def alertmanager_url(self) -> str:
        """Alertmanager's base URL."""
        return f"http://127.0.0.1:{self.alertmanager_port}"

    def start(self, *, ready_timeout_s: float = 30) -> None:
        """Write both configs into ``run_dir/monitoring``, start both servers and wait until both are ready."""
        for binary in (PROMETHEUS, ALERTMANAGER):
            if shutil.which(binary) is None:
                raise FileNotFoundError(f"{binary} is not on PATH: run scripts/install-monitoring.sh")
        home = self.config.run_dir / "monitoring"
        home.mkdir(parents=True, exist_ok=True)
        source = yaml.safe_load((self.config.alerts_dir / "alertmanager.yml").read_text())
        am_config = home / "alertmanager.yml"
        am_config.write_text(yaml.safe_dump(alertmanager_config(source, self.config.webhook_url), sort_keys=False))
        prom_config = home / "prometheus.yml"
        alertmanager = f"127.0.0.1:{self.alertmanager_port}"
        prom_config.write_text(yaml.safe_dump(prometheus_config(self.config, alertmanager), sort_keys=False))
        servers = {
            "alertmanager": [
                ALERTMANAGER,
                f"--config.file={am_config}",
                f"--storage.path={home / 'alertmanager-data'}",
                f"--web.listen-address={alertmanager}",
                "--cluster.listen-address=",  # no gossip port: a single loopback instance
            ],
            "prometheus": [
                PROMETHEUS,
                f"--config.file={prom_config}",
                f"--storage.tsdb.path={home / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{self.prometheus_port}",
            ],
        }
        try:
            for name, argv in servers.items():
                self.procs.append(Proc(name, argv, dict(os.environ), home / f"{name}.log"))
            for proc, url in zip(self.procs, (self.alertmanager_url, self.prometheus_url), strict=True):
                self._wait_ready(proc, url, ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    @staticmethod
    def _wait_ready(proc: Proc, url: str, timeout_s: float) -> None:
        def ready_or_dead() -> bool:
            return not proc.alive() or httpx.get(f"{url}/-/ready", timeout=2).status_code == 200

        wait_until(ready_or_dead, timeout_s, f"{proc.name} at {url}/-/ready (log in {proc.log_path})")
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited during start-up (log in {proc.log_path})")

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts Alertmanager holds now (``GET /api/v2/alerts``): each with ``labels``, ``annotations``, …."""
        response = httpx.get(f"{self.alertmanager_url}/api/v2/alerts", timeout=5)
        response.raise_for_status()
        alerts: list[dict[str, Any]] = response.json()
        return alerts

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant PromQL query at Prometheus (``GET /api/v1/query``)."""
        response = httpx.get(f"{self.prometheus_url}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def stop(self) -> None:
        """Stop both servers (Prometheus first, so it sends nothing to a stopped Alertmanager)."""
        for proc in reversed(self.procs):
            proc.stop(timeout_s=10)
        self.procs.clear()
