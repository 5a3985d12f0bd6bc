"""Composition root of the scheduler: ``create_service`` builds it from settings (``main`` only runs it)."""

from __future__ import annotations

from collections.abc import Callable

from tq_scheduler.scheduler import Scheduler
from tq_scheduler.settings import SchedulerSettings
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.backfill import ScheduleKeysBackfill, SweepKeysBackfill, in_turn
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import SystemClock
from tqcore.logs import configure_logging
from tqcore.loop import PeriodicService, instance_name
from tqcore.metrics import observe_commit
from tqcore.ports import Clock, Registry, TaskQueue, TaskStore
from tqcore.tracing import configure_tracing


def build_service(
    settings: SchedulerSettings,
    *,
    store: TaskStore,
    queue: TaskQueue,
    registry: Registry,
    clock: Clock,
    backfill: Callable[[], bool] | None = None,
) -> PeriodicService:
    """The scheduler over the given adapters (tests pass fakes)."""
    scheduler = Scheduler(
        store,
        queue,
        registry,
        clock,
        parts=settings.due_shards,  # one read per shard of the due index, in parallel
        catchup_s=settings.catchup_s,
        starting_deadline_s=settings.starting_deadline_s,
        interval_s=settings.scheduler_interval_s,
        stage_s=settings.scheduler_stage_s,
        instance=instance_name(),
        backfill=backfill,
    )
    return PeriodicService("scheduler", scheduler, settings.scheduler_interval_s, registry)


def create_service(settings: SchedulerSettings) -> PeriodicService:
    """The scheduler wired to AWS (or the emulator) from ``TQ_*`` settings."""
    configure_logging("scheduler")
    configure_tracing("scheduler", settings)
    ddb = aws.client(settings, "dynamodb")
    return build_service(
        settings,
        # One store per process: its batcher lets concurrent writes share TransactWriteItems calls.
        store=DynamoTaskStore(ddb, settings, on_commit=observe_commit),
        queue=SqsTaskQueue(aws.client(settings, "sqs"), settings),
        registry=DynamoRegistry(ddb, settings),
        clock=SystemClock(),
        backfill=in_turn(SweepKeysBackfill(ddb, settings).step, ScheduleKeysBackfill(ddb, settings).step),
    )
