"""gunicorn configuration for the gateway, read from the same settings as the app."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess

from tq_gateway.settings import GatewaySettings

_settings = GatewaySettings()

bind = f"{_settings.gateway_host}:{_settings.gateway_port}"
workers = _settings.gateway_workers
worker_class = "gthread"
threads = _settings.gateway_threads
# Each worker builds its own app (and AWS clients) after the fork.
preload_app = False
graceful_timeout = 10
# Idle keep-alive connections stay open longer than a client or load balancer keeps one idle (AWS ALB: 60 s):
# a server that closes first races the client's next request on that connection, which then reads a reset.
keepalive = 75
accesslog = None
# gunicorn 23+ opens a control socket in $HOME by default; several gateways on one machine would share it.
control_socket_disable = True


def child_exit(server: Any, worker: Any) -> None:
    """Let /metrics forget a dead worker's live gauges."""
    import os

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
