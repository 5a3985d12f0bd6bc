"""Composition root of the gateway: ``create_app()`` is what gunicorn serves."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import falcon

from tq_gateway import errors
from tq_gateway.auth import BearerAuth, authenticators
from tq_gateway.auth_failures import FailureBudget
from tq_gateway.body import BodyLimit
from tq_gateway.console import Console, UseCases, add_console
from tq_gateway.metrics import Metrics, RequestMetrics
from tq_gateway.openapi import OpenApi
from tq_gateway.overview import OverviewResource
from tq_gateway.ratelimit import RateLimit, Replicas, instance_name
from tq_gateway.resources import Health, Ready, TaskBatch, TaskCollection, TaskItem, TaskPause, TaskResume
from tq_gateway.resources_history import (
    BulkAction,
    DeadLetterCollection,
    QueueList,
    ScheduleCollection,
    TaskEvents,
    TaskRedrive,
    TaskRunLog,
    TaskRuns,
)
from tq_gateway.settings import GatewaySettings
from tq_gateway.streams import StreamTiming, TaskEventStream
from tq_gateway.tracing import RequestSpans
from tq_gateway.waiting import Slots, Waits
from tq_gateway.watch import TaskWatch
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.api_keys import DynamoApiKeyStore
from tqcore.adapters.dynamodb.queries import DynamoTaskQueries
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.s3.run_logs import S3RunLogs
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.api_keys import ApiKeys
from tqcore.clock import SystemClock, new_task_id
from tqcore.domain.requests import CancelTasks, RedriveDeadLetters
from tqcore.listing import ScheduleListing, TaskListing
from tqcore.logs import configure_logging
from tqcore.metrics import observe_commit
from tqcore.ports import Clock, ManagedQueue, Registry, RunLogStore, TaskStore
from tqcore.queries import TaskQueries
from tqcore.tracing import configure_tracing
from tqcore.usecases.bulk import BulkCancel
from tqcore.usecases.management import DeadLetters, TaskHistory
from tqcore.usecases.overview import SystemOverview
from tqcore.usecases.service import Catalog, Tasks

#: Many submits in one request (a custom method in AIP-136's style: a colon, so it can never be a task id).
BATCH_PATH = "/v1/tasks:batch"
#: Cancel many tasks of a group, by ids or by filter (the same style: a colon, never a task id).
CANCEL_PATH = "/v1/tasks:cancel"

#: The reconnection delay streams tell their clients (SSE ``retry:``), in milliseconds.
STREAM_RETRY_MS = 1000


def build_app(
    settings: GatewaySettings,
    *,
    store: TaskStore,
    queries: TaskQueries,
    queue: ManagedQueue,
    registry: Registry,
    clock: Clock,
    new_id: Callable[[], str] = new_task_id,
    replicas: Replicas | None = None,
    logs: RunLogStore | None = None,
    api_keys: ApiKeys | None = None,
    trace_requests: bool = False,
    presence: Callable[[], dict[str, list[str]]] | None = None,
    probes: Mapping[str, Callable[[], object]] | None = None,
) -> falcon.App[Any, Any]:
    """The Falcon app over the given adapters (tests may pass their own; ``replicas`` defaults to one); with
    ``trace_requests`` each request is a span. ``/readyz`` reads ``presence`` (default: the registry's) and
    calls each of ``probes`` (one call per other AWS dependency)."""
    catalog = Catalog(registry)
    tasks = Tasks(store, queue, catalog, clock, new_id)
    history = TaskHistory(store, logs, clock)
    dead_letters = DeadLetters(
        store, queries, queue, clock, every_group=catalog.groups, page_bytes=settings.list_page_bytes
    )
    overview = SystemOverview(queue, queries, registry, clock, pools=catalog.pools, every_group=catalog.groups)
    listing = TaskListing(queries, every_group=catalog.groups, page_bytes=settings.list_page_bytes)
    schedules = ScheduleListing(queries, every_group=catalog.groups, page_bytes=settings.list_page_bytes)
    # One watch and one set of wait slots per worker process: its streams and waits share them.
    watch = TaskWatch(queries.stamps, settings.watch_interval_s)
    slots = Slots(settings.gateway_streams, settings.gateway_streams_per_principal)
    timing = StreamTiming(
        ping_s=settings.stream_ping_s,
        max_s=settings.stream_max_s,
        retry_ms=STREAM_RETRY_MS,
        recheck_s=settings.watch_interval_s,
    )
    bearer = BearerAuth(
        authenticators(settings, api_keys), FailureBudget.from_settings(settings), settings.trusted_proxy_hops
    )
    console = Console(settings, bearer)
    middleware: list[Any] = [
        *([RequestSpans()] if trace_requests else []),  # first: its span covers the rest of the request
        RequestMetrics(),
        BodyLimit(settings.max_body_bytes, {BATCH_PATH: settings.max_batch_body_bytes}),
        bearer,
        console.gate,  # the console's session cookie, resolved through the same bearer authentication
    ]
    if settings.rate_limit_rps > 0:  # after authentication: the limit is per principal
        middleware.append(RateLimit.from_settings(settings, replicas or Replicas()))
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = True
    errors.register(app)
    app.add_route("/v1/tasks", TaskCollection(tasks, listing, max_payload_nodes=settings.max_json_nodes))
    app.add_route(BATCH_PATH, TaskBatch(tasks, max_payload_nodes=settings.max_json_nodes))
    bulk_cancel = BulkCancel(store, queries, clock)
    app.add_route(CANCEL_PATH, BulkAction(CancelTasks, bulk_cancel.cancel))
    app.add_route(
        "/v1/tasks/{task_id}", TaskItem(tasks, Waits(watch, slots), max_payload_nodes=settings.max_json_nodes)
    )
    app.add_route("/v1/tasks/{task_id}/stream", TaskEventStream(history, watch, slots, timing))
    app.add_route("/v1/tasks/{task_id}/runs", TaskRuns(history))
    app.add_route("/v1/tasks/{task_id}/runs/{run_id}/log", TaskRunLog(history))
    app.add_route("/v1/tasks/{task_id}/events", TaskEvents(history))
    app.add_route("/v1/tasks/{task_id}/redrive", TaskRedrive(dead_letters))
    app.add_route("/v1/tasks/{task_id}/pause", TaskPause(tasks))
    app.add_route("/v1/tasks/{task_id}/resume", TaskResume(tasks))
    app.add_route("/v1/dlq", DeadLetterCollection(dead_letters))
    app.add_route("/v1/schedules", ScheduleCollection(schedules))
    app.add_route("/v1/dlq/redrive", BulkAction(RedriveDeadLetters, dead_letters.redrive))
    app.add_route("/v1/queues", QueueList(queue, catalog))
    app.add_route("/v1/overview", OverviewResource(overview))
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Ready(presence or registry.alive, settings.ready_requires, probes))
    app.add_route("/metrics", Metrics())
    app.add_route("/openapi.json", OpenApi())
    add_console(
        app,
        console,
        UseCases(
            tasks,
            listing,
            history,
            dead_letters,
            catalog,
            watch,
            slots,
            timing,
            schedules=schedules,
            overview=overview,
        ),
    )
    return app


def create_app() -> falcon.App[Any, Any]:
    """The app wired to AWS (or the emulator) from ``TQ_*`` settings; called once per gunicorn worker."""
    settings = GatewaySettings()
    configure_logging("gateway")
    traced = configure_tracing("gateway", settings)
    ddb = aws.client(settings, "dynamodb")
    registry = DynamoRegistry(ddb, settings)
    replicas = Replicas(registry)
    replicas.start(instance_name(settings))
    return build_app(
        settings,
        # One store per worker process: its batcher lets concurrent submits share TransactWriteItems calls (and
        # the queue's SendMessageBatch calls: one SqsTaskQueue per process).
        store=DynamoTaskStore(ddb, settings, on_commit=observe_commit),
        queries=DynamoTaskQueries(ddb, settings),
        queue=SqsTaskQueue(aws.client(settings, "sqs"), settings),
        registry=registry,
        clock=SystemClock(),
        replicas=replicas,
        logs=S3RunLogs(aws.client(settings, "s3"), settings),
        api_keys=ApiKeys(DynamoApiKeyStore(ddb, settings), SystemClock()),
        trace_requests=traced,
        # Readiness asks on clients of its own, with short timeouts: a poll answers within seconds, AWS or not.
        presence=DynamoRegistry(aws.client(settings, "dynamodb", probe=True), settings).alive,
        probes={
            "sqs": SqsTaskQueue(aws.client(settings, "sqs", probe=True), settings).check,
            "s3": S3RunLogs(aws.client(settings, "s3", probe=True), settings).check,
        },
    )
