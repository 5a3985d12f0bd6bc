"""Periodic services (scheduler, reaper): one composition helper and the run loop they share."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prometheus_client.registry import Collector

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.batching import TransactionBatcher
from tqcore.adapters.dynamodb.queries import DynamoTaskQueries
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.dead_letters import SqsDeadLetters
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import SystemClock
from tqcore.logs import configure_logging
from tqcore.metrics import observe_commit, serve_metrics
from tqcore.ports import Clock, DeadLetterInbox, ManagedQueue, Registry, TaskStore
from tqcore.presence import Presence
from tqcore.queries import TaskQueries
from tqcore.settings import CoreSettings
from tqcore.tracing import configure_tracing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Adapters:
    """Everything a periodic service may talk to."""

    store: TaskStore
    queue: ManagedQueue
    queries: TaskQueries
    registry: Registry
    dead_letters: DeadLetterInbox
    clock: Clock

    @classmethod
    def for_aws(cls, settings: CoreSettings) -> Adapters:
        """The AWS (or emulator) adapters named by the settings."""
        ddb, sqs = aws.client(settings, "dynamodb"), aws.client(settings, "sqs")
        return cls(
            # One batcher per process: concurrent writes share TransactWriteItems calls.
            store=DynamoTaskStore(
                ddb, settings, on_commit=observe_commit, batcher=TransactionBatcher.from_settings(ddb, settings)
            ),
            queue=SqsTaskQueue(sqs, settings),
            queries=DynamoTaskQueries(ddb, settings),
            registry=DynamoRegistry(ddb, settings),
            dead_letters=SqsDeadLetters(sqs, settings),
            clock=SystemClock(),
        )


@runtime_checkable
class Periodic(Protocol):
    """A periodic service's pass that holds resources: ``tick`` runs a pass, ``close`` releases them."""

    def tick(self) -> object:
        """One pass; a ``float`` return is the pause before the next."""
        ...

    def close(self) -> None:
        """Finish (e.g. send what was staged) and release threads."""
        ...


def run_periodic_service(
    service: str,
    settings: CoreSettings,
    interval_s: float,
    make_pass: Callable[[Adapters], Callable[[], object] | Periodic],
    collectors: Callable[[Adapters], list[Collector]] = lambda _: [],
) -> int:
    """Wire the AWS adapters, serve ``/metrics`` (with the service's own ``collectors``), announce presence,
    and run the pass every ``interval_s`` until SIGTERM."""
    configure_logging(service)
    configure_tracing(service, settings)
    adapters = Adapters.for_aws(settings)
    made = make_pass(adapters)
    serve_metrics(settings, *collectors(adapters))
    presence = Presence(adapters.registry, service, instance_name(), interval_s=5)
    presence.start()
    run_every(interval_s, made.tick if isinstance(made, Periodic) else made)
    if isinstance(made, Periodic):
        made.close()
    presence.stop()
    return 0


def instance_name() -> str:
    """This process as the presence registry names it: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_every(interval_s: float, one_pass: Callable[[], object], stop: threading.Event | None = None) -> None:
    """Call ``one_pass`` every ``interval_s`` seconds until SIGTERM/SIGINT (or ``stop`` is set).

    A pass that returns a ``float`` names its own pause before the next pass (the scheduler's, when it knows
    a task falls due sooner than the interval).
    """
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        pause_s = interval_s
        try:
            asked = one_pass()
            if isinstance(asked, float):
                pause_s = asked
        except Exception:
            log.exception("pass failed; retrying next interval")
        stop.wait(pause_s)
