"""gunicorn configuration for the gateway, read from the same settings as the app."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import ssl
import tempfile
from pathlib import Path
from typing import Any

from gunicorn import util
from prometheus_client import multiprocess

from tq_gateway import problems
from tq_gateway.buckets import create_table
from tq_gateway.settings import GatewaySettings

_settings = GatewaySettings()

bind = f"{_settings.gateway_host}:{_settings.gateway_port}"
workers = _settings.gateway_workers
# gthread, with request heads and TLS handshakes read in the event loop under deadlines (see tq_gateway.worker).
worker_class = "tq_gateway.worker.DeadlineWorker"
# A thread and a connection more per wait slot: streams and waits (at most gateway_streams of them, see
# tq_gateway.waiting) never take the threads ordinary requests need.
threads = _settings.gateway_threads + _settings.gateway_streams
worker_connections = _settings.gateway_connections + _settings.gateway_streams
# Each worker builds its own app (and AWS clients) after the fork.
preload_app = False
# A stopping worker ends its streams and waits at once (``DeadlineWorker.handle_exit``): they never hold it this long.
graceful_timeout = 10
# Idle keep-alive connections stay open longer than a client or load balancer keeps one idle (AWS ALB: 60 s):
# a server that closes first races the client's next request on that connection, which then reads a reset.
keepalive = 75
accesslog = None
# No access line per request unless an access log is asked for (gunicorn's own logger would log one whenever
# logconfig_dict is set).
logger_class = "tq_gateway.worker.Logger"
# gunicorn's own lines (the master's start-up, worker boots and deaths) are JSON like every other line.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "tqcore.logs.JsonFormatter", "service": "gateway"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["stderr"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
        "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
    },
}


def _write_refusal(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    util.write_nonblock(sock, problems.refusal(status_int, mesg or reason))


# A request gunicorn refuses itself (a request line over 4094 bytes, headers over their limits, malformed HTTP)
# never reaches the app; gunicorn answers it through ``util.write_error``, with an HTML page. It has no hook for
# that page, so its writer is replaced here (in the master, before workers fork): problem+json as everywhere.
util.write_error = _write_refusal
# gunicorn 23+ opens a control socket in $HOME by default; several gateways on one machine would share it.
control_socket_disable = True
# HTTPS when a certificate is configured; with a client CA, mutual TLS: no certificate signed by that CA, no
# connection (the handshake fails before any HTTP). Bearer authentication still applies on top.
if _settings.tls_cert:
    certfile = _settings.tls_cert
    keyfile = _settings.tls_key
    if _settings.tls_client_ca:
        ca_certs = _settings.tls_client_ca
        cert_reqs = ssl.CERT_REQUIRED


def on_starting(server: Any) -> None:
    """Before forking workers: create the host's shared rate-limit tables, name this replica and make the console's
    key if none is set, for the workers.

    Workers inherit the master's environment, so every worker of this master maps the same table and
    heartbeats the same presence instance (``<host>:<master pid>``): one replica, however many workers.
    """
    # Memory-backed where there is one (any local directory works: the pages stay cached); mkdtemp makes a
    # private (0700) directory with a random name under it.
    shm = Path("/dev/shm")  # noqa: S108
    directory = tempfile.mkdtemp(prefix="tq-gateway-", dir=shm if shm.is_dir() else None)
    for name, variable in (("rate-limit", "TQ_RATE_LIMIT_TABLE"), ("auth-failures", "TQ_AUTH_FAILURE_TABLE")):
        table = os.path.join(directory, name)
        create_table(table)
        os.environ[variable] = table
    os.environ.setdefault("TQ_GATEWAY_INSTANCE", f"{socket.gethostname()}:{os.getpid()}")
    # One console key for every worker (a session made by one is read by the others); a configured one wins.
    os.environ.setdefault("TQ_CONSOLE_SECRET", secrets.token_urlsafe(48))


def on_exit(server: Any) -> None:
    """Remove the shared rate-limit tables, and leave the presence registry (the other replicas then take this
    one's share of the rate limit at once, not when its workers' last heartbeat runs out)."""
    table = os.environ.get("TQ_RATE_LIMIT_TABLE")
    if table:
        shutil.rmtree(os.path.dirname(table), ignore_errors=True)
    instance = os.environ.get("TQ_GATEWAY_INSTANCE")
    if instance:  # imported here: the master imports no AWS client (or metric) before it forks
        from tq_gateway.ratelimit import SERVICE
        from tqcore.adapters import aws
        from tqcore.adapters.dynamodb.registry import DynamoRegistry
        from tqcore.presence import leave

        leave(DynamoRegistry(aws.client(_settings, "dynamodb"), _settings), SERVICE, instance)


def child_exit(server: Any, worker: Any) -> None:
    """Let /metrics forget a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
