"""Composition root of one executor process: ``tq-executor``."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading

import dramatiq

from tq_executor.broker import FifoSQSBroker
from tq_executor.handlers import HandlerRegistry, load_modules, registry
from tq_executor.middleware.redeliver_on_error import RedeliverOnError
from tq_executor.runner import Runner
from tq_executor.settings import ExecutorSettings
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.clock import SystemClock
from tqcore.dispatch import actor_name
from tqcore.domain.model import Priority
from tqcore.execution import Attempts
from tqcore.logs import configure_logging
from tqcore.presence import Presence

log = logging.getLogger(__name__)


def worker_id() -> str:
    """``<hostname>:<pid>``: the process whose death loses the lease."""
    return f"{socket.gethostname()}:{os.getpid()}"


def build_broker(settings: ExecutorSettings, runner: Runner) -> FifoSQSBroker:
    """The broker with one actor per priority; higher priorities are taken first from the local buffer."""
    broker = FifoSQSBroker(settings, middleware=[RedeliverOnError()])
    for priority in Priority:
        dramatiq.actor(
            actor_name=actor_name(priority),
            queue_name=priority.value,
            priority=priority.rank * 10,
            broker=broker,
        )(runner.run)
    return broker


def main(argv: list[str] | None = None) -> int:
    """``tq-executor``: run until SIGTERM or SIGINT; ``tq-executor register-types``: register and exit."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["register-types"]):
        print("usage: tq-executor [register-types]", file=sys.stderr)
        return 2
    settings = ExecutorSettings()
    configure_logging("executor")
    worker = worker_id()
    load_modules(settings.handler_modules)
    handlers: HandlerRegistry = registry
    ddb = aws.client(settings, "dynamodb")
    registry_store = DynamoRegistry(ddb, settings)
    # Types become submittable once registered; a deploy can register them before any executor runs.
    registry_store.register_types(handlers.types, by=worker)
    if args == ["register-types"]:
        print(f"tq-executor: registered {', '.join(handlers.types)}")
        return 0
    handlers.setup()
    store = DynamoTaskStore(ddb, settings)
    runner = Runner(Attempts(store, SystemClock(), worker=worker, lease_s=settings.lease_s), handlers)
    broker = build_broker(settings, runner)
    presence = Presence(registry_store, "executor", worker, interval_s=settings.presence_s)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    dworker = dramatiq.Worker(broker, worker_threads=settings.threads)
    dworker.start()
    presence.start()
    log.info("executor %s running types %s", worker, ", ".join(handlers.types))
    stop.wait()
    log.info("executor %s stopping (grace %.0f s)", worker, settings.shutdown_grace_s)
    presence.stop()
    dworker.stop(timeout=int(settings.shutdown_grace_s * 1000))
    handlers.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
