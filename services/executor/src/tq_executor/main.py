"""Composition root of one executor process: ``tq-executor``."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from dataclasses import replace
from typing import Any

import dramatiq
from botocore.exceptions import ClientError
from dramatiq.middleware import CurrentMessage

import tq
from tq.handlers import load_modules
from tq_executor import isolation, sandbox
from tq_executor.broker import FifoSQSBroker, give_back_unstarted
from tq_executor.heartbeat import Heartbeat, call_deadline_s
from tq_executor.middleware.redeliver_on_error import RedeliverOnError
from tq_executor.middleware.tracing import Tracing
from tq_executor.run_log import RunLogs
from tq_executor.runner import Runner
from tq_executor.settings import ExecutorSettings
from tq_executor.visibility import VisibilityKeeper
from tqcore.activity import ACTIVITY
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.s3.run_logs import S3RunLogs
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import SystemClock
from tqcore.dispatch import Dispatch, actor_name
from tqcore.domain.model import Priority
from tqcore.domain.scripts import SCRIPT_TYPE
from tqcore.errors import TypeServedElsewhere
from tqcore.logs import configure_logging
from tqcore.metrics import observe_commit, serve_metrics
from tqcore.ports import TypeInfo
from tqcore.presence import Presence
from tqcore.settings import load_settings
from tqcore.tracing import configure_tracing
from tqcore.usecases.execution import Attempts

log = logging.getLogger(__name__)


def worker_id() -> str:
    """``<hostname>:<pid>``: the process whose death loses the lease (its handler processes die with it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def build_broker(
    settings: ExecutorSettings, runner: Runner, keeper: VisibilityKeeper, *, traced: bool = True
) -> FifoSQSBroker:
    """The broker with one actor per priority; higher priorities are taken first from the local buffer. With
    ``traced``, each attempt is a span (without an exporter a span would only cost CPU)."""
    middleware: list[dramatiq.Middleware] = [CurrentMessage(), RedeliverOnError(), *([Tracing()] if traced else [])]
    broker = FifoSQSBroker(settings, middleware=middleware, keeper=keeper, pool=settings.pool)

    def run(dispatch: Dispatch | dict[str, Any]) -> None:
        sqs_message = getattr(CurrentMessage.get_current_message(), "_sqs_message", None)
        if sqs_message is not None:  # from now on its visibility is renewed until it is acked or nacked
            keeper.started(sqs_message.receipt_handle)
        runner.run(dispatch, sqs_message)

    for priority in Priority:
        dramatiq.actor(
            actor_name=actor_name(priority), queue_name=priority.value, priority=priority.rank * 10, broker=broker
        )(run)
    return broker


def main(argv: list[str] | None = None) -> int:
    """``tq-executor``: run until SIGTERM or SIGINT; ``tq-executor register-types``: register and exit."""
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["register-types"]):
        print("usage: tq-executor [register-types]", file=sys.stderr)
        return 2
    sandbox.make_undumpable()  # before any secret is read: same-uid programs cannot read our /proc entries
    settings = load_settings(ExecutorSettings, "tq-executor")
    modules = handler_modules(settings)
    if (refused := refusal(settings, modules)) is not None:
        print(f"tq-executor: refusing to start: {refused}", file=sys.stderr)
        return 2
    configure_logging("executor")
    traced = configure_tracing("executor", settings)
    worker = worker_id()
    try:
        types = loaded_types(settings, modules)  # only to read the specs: handler processes set handlers up
    except Refused as error:
        print(f"tq-executor: refusing to start: {error}", file=sys.stderr)
        return 2
    if (missing := missing_queues(settings)) is not None:
        print(f"tq-executor: refusing to start: {missing}", file=sys.stderr)
        return 2
    ddb = aws.client(settings, "dynamodb")
    registry_store = DynamoRegistry(ddb, settings)
    # Types become submittable once registered; a deploy can register them before any executor runs. A type
    # belongs to one pool: one that a live executor of another pool registered is refused (docs/ARCHITECTURE.md,
    # "Executor pools").
    try:
        registry_store.register_types(types, by=worker, alive=registry_store.alive().get("executor", []))
    except TypeServedElsewhere as error:
        print(f"tq-executor: refusing to start: {error}", file=sys.stderr)
        return 2
    names = ", ".join(info.name for info in types)
    if args == ["register-types"]:
        print(f"tq-executor: registered {names} in pool {settings.pool!r}")
        return 0
    # One store per process: its batcher lets the claims and outcomes of concurrent attempts share
    # TransactWriteItems calls.
    store = DynamoTaskStore(ddb, settings, on_commit=observe_commit)
    return serve(settings, worker, registry_store, store, traced=traced)


def served_types(settings: ExecutorSettings) -> list[TypeInfo]:
    """The catalog records of the types the loaded modules registered: this executor's pool, each handler's
    declared defaults and payload schema, and the ``script`` type's allow-list for the gateway to check submits
    against."""
    records = {
        spec.name: TypeInfo(spec.name, settings.pool, defaults=spec.defaults(), payload_schema=spec.payload_schema())
        for spec in tq.registry.specs()
    }
    if SCRIPT_TYPE in records:
        records[SCRIPT_TYPE] = replace(records[SCRIPT_TYPE], spec=settings.script_spec())
    return [records[name] for name in sorted(records)]


class Refused(Exception):
    """The executor cannot start as configured (one line: why)."""


def loaded_types(settings: ExecutorSettings, modules: list[str]) -> list[TypeInfo]:
    """Import the handler modules and read their types' catalog records; ``Refused`` names a module that does not
    import (a missing module, a bad declaration, a type registered twice) or a type whose records cannot be made."""
    for module in modules:
        try:
            load_modules([module])
        except Exception as error:  # noqa: BLE001 - whatever the module raised, in one line
            raise Refused(f"handler module {module!r} does not import: {_one_line(error)}") from None
    try:
        return served_types(settings)
    except Exception as error:  # noqa: BLE001 - a declared payload model without a JSON schema, say
        raise Refused(f"the handlers' declarations cannot be read: {_one_line(error)}") from None


def _one_line(error: BaseException) -> str:
    return " ".join(f"{type(error).__name__}: {error}".split())


def missing_queues(settings: ExecutorSettings) -> str | None:
    """Why this executor's pool cannot receive work (its queues do not exist; ``None``: they do): tasks of the
    types it would register would be sent to queues nobody created (a misspelled ``TQ_POOL``, say)."""
    sqs = aws.client(settings, "sqs")
    missing = []
    for priority in Priority:
        name = settings.queue_name(priority, settings.pool)
        try:
            sqs.get_queue_url(QueueName=name)
        except ClientError as error:
            if not _no_such_queue(error):
                raise
            missing.append(name)
    if not missing:
        return None
    return (
        f"pool {settings.pool!r} has no queues ({', '.join(missing)} do not exist): create them with "
        f"TQ_POOLS={settings.pool} tq-bootstrap (or list the pool in tq:pools in Pulumi), or fix TQ_POOL"
    )


def _no_such_queue(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return "NonExistentQueue" in code or "QueueDoesNotExist" in code


def refusal(settings: ExecutorSettings, modules: list[str]) -> str | None:
    """Why this executor cannot work as configured (``None``: it can)."""
    if not modules:
        return (
            "no task types configured: set TQ_HANDLER_MODULES (modules registering handlers) and/or TQ_SCRIPT_ALLOW"
            " or TQ_SCRIPTS_FILE (the script allow-list)"
        )
    base, count = settings.script_uid_base, settings.script_uid_count
    # Every process of a script uid is killed: a range holding a real account's uid would kill its processes.
    if settings.script_allow is not None and os.geteuid() == 0 and (named := sandbox.named_uids(base, count)):
        return (
            f"TQ_SCRIPT_UID_BASE/COUNT: uids {base}..{base + count - 1} must have no passwd entry, but these have one: "
            f"{', '.join(named[:5])}; choose a free range"
        )
    return None


def handler_modules(settings: ExecutorSettings) -> list[str]:
    """The configured handler modules, and the ``script`` module if a script allow-list is configured."""
    script = ["tq_executor.script"] if settings.script_allow is not None else []
    return [*settings.handler_modules, *(m for m in script if m not in settings.handler_modules)]


def serve(
    settings: ExecutorSettings,
    worker: str,
    registry_store: DynamoRegistry,
    store: DynamoTaskStore,
    *,
    traced: bool = True,
) -> int:
    """Consume until SIGTERM; then stop receiving, let attempts finish within the grace, release the rest."""
    modules = handler_modules(settings)
    isolation.prepare(modules)
    queue = SqsTaskQueue(aws.client(settings, "sqs"), settings)
    # Heartbeats (lease and visibility) use clients of their own whose calls give up well inside the lease.
    deadline_s = call_deadline_s(settings.lease_s, settings.heartbeat_s)
    lease_store = DynamoTaskStore(aws.client(settings, "dynamodb", deadline_s=deadline_s), settings)
    attempts = Attempts(store, queue, SystemClock(), worker=worker, lease_s=settings.lease_s, lease_store=lease_store)
    heartbeat = Heartbeat(
        attempts, interval_s=settings.heartbeat_s, lease_s=settings.lease_s, parallel=settings.threads
    )
    keeper = VisibilityKeeper(
        aws.client(settings, "sqs", deadline_s=deadline_s),
        visibility_s=settings.lease_s,
        renew_every_s=settings.heartbeat_s,
    )
    logs = RunLogs(
        S3RunLogs(aws.client(settings, "s3"), settings),
        max_bytes=settings.run_log_max_bytes,
        retention_s=settings.run_log_retention_s,
    )
    # As root, each slot's scripts run as a uid of their own; otherwise as ours (see docs/ARCHITECTURE.md).
    scripts_as_root = settings.script_allow is not None and os.geteuid() == 0
    uids = sandbox.UidPool(settings.script_uid_base, settings.script_uid_count) if scripts_as_root else None
    runner = Runner(attempts, heartbeat, modules, logs, uids)
    broker = build_broker(settings, runner, keeper, traced=traced)
    serve_metrics(settings)
    ACTIVITY.pool = settings.pool  # the overview counts live executors per pool from their heartbeats
    presence = Presence(registry_store, "executor", worker, interval_s=settings.presence_s, activity=ACTIVITY.snapshot)

    stop = threading.Event()

    def on_signal(*_: object) -> None:  # receive nothing more from the instant the signal arrives
        broker.stop_receiving()
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    dworker = dramatiq.Worker(broker, worker_threads=settings.threads)
    # Messages buffered unstarted wait for this executor's threads (given back after about a lease): few.
    dworker.queue_prefetch = settings.prefetch
    # Receive nothing before a handler process can start: until then every message received would stay hidden,
    # its task waiting, for as long as the fork server takes to import the handler modules.
    log.info("handler processes ready in %.1f s", isolation.warm_up(modules))
    keeper.start()
    dworker.start()
    heartbeat.start()
    presence.start()
    log.info("executor %s of pool %s running types %s", worker, settings.pool, ", ".join(tq.registry.types))
    # Woken every second, not only by the signal: Python runs signal handlers in the main thread between bytecodes,
    # and a signal the kernel hands to another thread does not interrupt a main thread blocked in a lock.
    while not stop.wait(1.0):
        pass
    log.info("executor %s stopping: no new work, %.0f s grace", worker, settings.shutdown_grace_s)
    try:
        if given_back := give_back_unstarted(dworker):
            log.info("gave back %d received tasks it had not started", given_back)
        dworker.stop(timeout=int(settings.shutdown_grace_s * 1000))
        released = heartbeat.release_all()
        if released:
            log.info("released %d unfinished attempts for other executors", released)
        for thread in dworker.workers:  # let outcome writes already under way finish
            thread.join(timeout=5)
        heartbeat.stop()
        keeper.stop()
    finally:
        presence.stop()  # last: leaving the registry is a call that must not eat into the grace
        runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
