"""Falcon resources of a task's history (runs, events), the dead letters and the queues: one class per URI
template."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import falcon

from tq_gateway.body import json_object, query_params
from tq_gateway.resources import send_page, send_task
from tqcore.domain.access import Principal
from tqcore.domain.codec import event_to_dict
from tqcore.domain.requests import DeadLetterQuery, EventPageQuery, GroupAction, PageQuery, ScheduleQuery
from tqcore.domain.runs import run_to_dict
from tqcore.errors import QueueUnavailable, StoreUnavailable
from tqcore.listing import ScheduleListing
from tqcore.ports import ManagedQueue, QueueDepth
from tqcore.usecases.bulk import Affected
from tqcore.usecases.management import DeadLetters, TaskHistory
from tqcore.usecases.service import Catalog

A = TypeVar("A", bound=GroupAction)


class TaskRuns:
    """``/v1/tasks/{task_id}/runs``."""

    def __init__(self, history: TaskHistory) -> None:
        self._history = history

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """A page of the task's runs, newest first."""
        query = PageQuery.model_validate(query_params(req, "limit", "cursor"))
        page = self._history.runs(task_id, req.context.principal, query)
        resp.media = {"items": [run_to_dict(run) for run in page.items], "next_cursor": page.next_cursor}


class TaskRunLog:
    """``/v1/tasks/{task_id}/runs/{run_id}/log``."""

    def __init__(self, history: TaskHistory) -> None:
        self._history = history

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str, run_id: str) -> None:
        """The run's captured output and log lines, as stored (at most ``TQ_RUN_LOG_MAX_BYTES`` and a marker)."""
        resp.data = self._history.run_log(task_id, run_id, req.context.principal)
        resp.content_type = "text/plain; charset=utf-8"


class TaskEvents:
    """``/v1/tasks/{task_id}/events``."""

    def __init__(self, history: TaskHistory) -> None:
        self._history = history

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """A page of the task's events, oldest first."""
        query = EventPageQuery.model_validate(query_params(req, "limit", "cursor"))
        page = self._history.events(task_id, req.context.principal, query)
        resp.media = {"items": [event_to_dict(event) for event in page.items], "next_cursor": page.next_cursor}


class TaskRedrive:
    """``/v1/tasks/{task_id}/redrive``."""

    def __init__(self, dead_letters: DeadLetters) -> None:
        self._dead_letters = dead_letters

    def on_post(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Queue the failed task again with a fresh retry budget."""
        send_task(resp, self._dead_letters.redrive_task(task_id, req.context.principal))


class DeadLetterCollection:
    """``/v1/dlq``."""

    def __init__(self, dead_letters: DeadLetters) -> None:
        self._dead_letters = dead_letters

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of dead letters, newest first."""
        query = DeadLetterQuery.model_validate(query_params(req, "group", "type", "limit", "cursor"))
        send_page(resp, self._dead_letters.page(query, req.context.principal))


class ScheduleCollection:
    """``/v1/schedules``: repeating tasks not yet ended and one-off tasks waiting for their time."""

    def __init__(self, schedules: ScheduleListing) -> None:
        self._schedules = schedules

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of schedules, newest first."""
        query = ScheduleQuery.model_validate(query_params(req, "group", "type", "limit", "cursor"))
        send_page(resp, self._schedules.page(query, req.context.principal))


class BulkAction(Generic[A]):
    """An action on many tasks of one group (``/v1/dlq/redrive``, ``/v1/tasks:cancel``): the body as ``model``,
    one use case call, and the answer ``{"count", "ids", "dry_run"}``."""

    def __init__(self, model: type[A], act: Callable[[A, Principal], Affected]) -> None:
        self._model = model
        self._act = act

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Act on the group's tasks (or, on a dry run, name those it would act on)."""
        cmd = self._model.model_validate(json_object(req))
        outcome = self._act(cmd, req.context.principal)
        resp.media = {"count": outcome.count, "ids": outcome.ids, "dry_run": cmd.dry_run}


class QueueList:
    """``/v1/queues``: each pool's queue of every priority, with its depth, in-flight count and dead-letter depth
    (the pools in use: the default pool and every pool a registered type belongs to).

    The counts are SQS's approximations anyway, so each gateway process reuses an answer for ``cache_s``:
    dashboards polling it cost six ``GetQueueAttributes`` calls per pool and process per ``cache_s``, not per request.
    Any authenticated caller may read them: they are totals over every group and name no task.
    """

    def __init__(self, queue: ManagedQueue, catalog: Catalog, cache_s: float = 2.0) -> None:
        self._queue = queue
        self._catalog = catalog
        self._cache_s = cache_s
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._answer: dict[str, Any] | QueueUnavailable | StoreUnavailable = {}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The queues, pool by pool (the default pool first), highest priority first."""
        with self._lock:  # held only to read and swap the cached answer, never across the SQS calls
            stale = time.monotonic() - self._read_at > self._cache_s
            answer = self._answer
        if stale:
            try:
                depths = self._queue.depths(self._catalog.pools())
                answer = {"queues": [queue_to_dict(depth) for depth in depths]}
            except (
                QueueUnavailable,
                StoreUnavailable,
            ) as error:  # cached too: a slow SQS is asked once per cache_s, not per request
                answer = error
            with self._lock:
                self._answer, self._read_at = answer, time.monotonic()
        if isinstance(answer, QueueUnavailable | StoreUnavailable):
            raise type(answer)(answer.message)
        resp.media = answer


def queue_to_dict(depth: QueueDepth) -> dict[str, Any]:
    """One item of ``GET /v1/queues``."""
    return {
        "name": depth.name,
        "pool": depth.pool,
        "priority": depth.priority.value,
        "depth": depth.depth,
        "in_flight": depth.in_flight,
        "dlq_depth": depth.dlq_depth,
    }
