"""Periodic services (scheduler, reaper): one composition helper and the run loop they share."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import SystemClock
from tqcore.logs import configure_logging
from tqcore.ports import Clock, Registry, TaskQueue, TaskStore
from tqcore.presence import Presence
from tqcore.settings import CoreSettings

log = logging.getLogger(__name__)

#: Builds a service's pass from the store, the queue, the registry and the clock.
PassFactory = Callable[[TaskStore, TaskQueue, Registry, Clock], Callable[[], object]]


def run_periodic_service(service: str, settings: CoreSettings, interval_s: float, make_pass: PassFactory) -> int:
    """Wire the AWS adapters, announce presence, and run the pass every ``interval_s`` until SIGTERM."""
    configure_logging(service)
    ddb = aws.client(settings, "dynamodb")
    registry = DynamoRegistry(ddb, settings)
    one_pass = make_pass(
        DynamoTaskStore(ddb, settings), SqsTaskQueue(aws.client(settings, "sqs"), settings), registry, SystemClock()
    )
    presence = Presence(registry, service, f"{socket.gethostname()}:{os.getpid()}", interval_s=5)
    presence.start()
    run_every(interval_s, one_pass)
    presence.stop()
    return 0


def run_every(interval_s: float, one_pass: Callable[[], object], stop: threading.Event | None = None) -> None:
    """Call ``one_pass`` every ``interval_s`` seconds until SIGTERM/SIGINT (or ``stop`` is set)."""
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        try:
            one_pass()
        except Exception:
            log.exception("pass failed; retrying next interval")
        stop.wait(interval_s)
