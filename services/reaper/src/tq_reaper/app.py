"""Composition root of the reaper: ``create_service`` builds it from settings (``main`` only runs it)."""

from __future__ import annotations

from tq_reaper.gauges import SystemGauges
from tq_reaper.reaper import Reaper
from tq_reaper.settings import ReaperSettings
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.queries import DynamoTaskQueries
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.dead_letters import SqsDeadLetters
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import SystemClock
from tqcore.logs import configure_logging
from tqcore.loop import PeriodicService
from tqcore.metrics import observe_commit
from tqcore.ports import Clock, DeadLetterInbox, ManagedQueue, Registry, TaskStore
from tqcore.queries import TaskQueries
from tqcore.tracing import configure_tracing


def build_service(
    settings: ReaperSettings,
    *,
    store: TaskStore,
    queue: ManagedQueue,
    queries: TaskQueries,
    registry: Registry,
    dead_letters: DeadLetterInbox,
    clock: Clock,
) -> PeriodicService:
    """The reaper and its gauges over the given adapters (tests pass fakes)."""
    reaper = Reaper(store, queue, dead_letters, clock, registry)
    gauges = SystemGauges(queue, queries, registry, clock, ttl_s=settings.gauges_ttl_s)
    return PeriodicService("reaper", reaper.run_once, settings.reaper_interval_s, registry, [gauges])


def create_service(settings: ReaperSettings) -> PeriodicService:
    """The reaper wired to AWS (or the emulator) from ``TQ_*`` settings."""
    configure_logging("reaper")
    configure_tracing("reaper", settings)
    ddb, sqs = aws.client(settings, "dynamodb"), aws.client(settings, "sqs")
    return build_service(
        settings,
        # One store per process: its batcher lets concurrent writes share TransactWriteItems calls.
        store=DynamoTaskStore(ddb, settings, on_commit=observe_commit),
        queue=SqsTaskQueue(sqs, settings),
        queries=DynamoTaskQueries(ddb, settings),
        registry=DynamoRegistry(ddb, settings),
        dead_letters=SqsDeadLetters(sqs, settings),
        clock=SystemClock(),
    )
