"""Falcon resources: one class per URI template; each parses, makes one tqcore call, and answers."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import falcon
from pydantic import ValidationError

from tq_gateway.body import json_object, query_params
from tq_gateway.errors import item_problem, problem
from tq_gateway.views import listed_view, task_view
from tq_gateway.waiting import Waits
from tqcore.documents import page_json
from tqcore.domain.commands import MAX_PAYLOAD_NODES, PAYLOAD_NODES, SubmitBatch, SubmitTask, UpdateTask
from tqcore.domain.errors import PreconditionFailed, TqError
from tqcore.domain.requests import TaskListQuery, TaskReadQuery
from tqcore.domain.task import Task
from tqcore.listing import TaskListing, TaskPage
from tqcore.usecases.service import Submitted, Tasks

#: One task version, plain or as a quoted entity tag (ASCII digits only).
VERSION_TAG = re.compile(r'([0-9]{1,18})|"([0-9]{1,18})"', re.ASCII)


def send_task(resp: falcon.Response, task: Task, status: int = 200) -> None:
    """The task's view as the body, its version as the ETag."""
    resp.status = status
    resp.media = task_view(task)
    resp.etag = f'"{task.version}"'


def send_page(resp: falcon.Response, page: TaskPage) -> None:
    """A page of tasks as the body: each stored document cut to the view and spliced in, never parsed (see
    ``tqcore.documents``)."""
    resp.content_type = falcon.MEDIA_JSON
    resp.data = page_json([listed_view(item.doc) for item in page.items], page.next_cursor)


class TaskCollection:
    """``/v1/tasks``."""

    def __init__(self, tasks: Tasks, listing: TaskListing, *, max_payload_nodes: int = MAX_PAYLOAD_NODES) -> None:
        self._tasks = tasks
        self._listing = listing
        self._bounds = {PAYLOAD_NODES: max_payload_nodes}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of tasks, newest first."""
        query = TaskListQuery.model_validate(query_params(req, "group", "status", "type", "name", "limit", "cursor"))
        send_page(resp, self._listing.page(query, req.context.principal))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_object(req)
        header_key = req.get_header("Idempotency-Key")
        if header_key and body.get("idempotency_key") not in (None, header_key):
            raise falcon.HTTPBadRequest(
                title="Bad Request", description="Idempotency-Key header and body idempotency_key differ"
            )
        if header_key:
            body["idempotency_key"] = header_key
        outcome = self._tasks.submit(SubmitTask.model_validate(body, context=self._bounds), req.context.principal)
        send_task(resp, outcome.task, 200 if outcome.replayed else 201)
        resp.location = f"/v1/tasks/{outcome.task.id}"
        if outcome.replayed:
            resp.set_header("Idempotent-Replayed", "true")


class TaskBatch:
    """``/v1/tasks:batch``: many submits in one request, each answered on its own, in request order."""

    def __init__(self, tasks: Tasks, *, max_payload_nodes: int = MAX_PAYLOAD_NODES) -> None:
        self._tasks = tasks
        self._bounds = {PAYLOAD_NODES: max_payload_nodes}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        batch = SubmitBatch.model_validate(json_object(req))
        parsed: list[SubmitTask | ValidationError] = [self._parse(item) for item in batch.tasks]
        valid = [item for item in parsed if isinstance(item, SubmitTask)]
        outcomes = iter(self._tasks.submit_many(valid, req.context.principal))
        items = [_item(item if isinstance(item, ValidationError) else next(outcomes)) for item in parsed]
        resp.media = {"items": items}

    def _parse(self, item: Any) -> SubmitTask | ValidationError:
        try:
            return SubmitTask.model_validate(item, context=self._bounds)
        except ValidationError as error:
            return error


def _item(outcome: Submitted | TqError | ValidationError) -> dict[str, Any]:
    """A batch item: its task and 201 (200 for a replayed key), or its error as a single submit's problem."""
    if isinstance(outcome, Submitted):
        return {"status": 200 if outcome.replayed else 201, "task": task_view(outcome.task)}
    error = item_problem(outcome)
    return {"status": error["status"], "error": error}


class TaskItem:
    """``/v1/tasks/{task_id}``."""

    def __init__(self, tasks: Tasks, waits: Waits, *, max_payload_nodes: int = MAX_PAYLOAD_NODES) -> None:
        self._tasks = tasks
        self._waits = waits
        self._bounds = {PAYLOAD_NODES: max_payload_nodes}

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """The task; with ``wait_s``, as soon as it has ended, or as it is ``wait_s`` seconds later."""
        query = TaskReadQuery.model_validate(query_params(req, "wait_s"))
        task = self._tasks.get(task_id, req.context.principal)
        if query.wait_s > 0 and not task.status.is_terminal:
            # Read again whatever the watch saw: its reads lag a moment, and may fail for the whole wait.
            self._waits.until_ended(task, query.wait_s, req.context.principal.name)
            task = self._tasks.get(task_id, req.context.principal)
        send_task(resp, task)

    def on_patch(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        cmd = UpdateTask.model_validate(json_object(req), context=self._bounds)
        send_task(resp, self._tasks.update(task_id, cmd, req.context.principal, if_match=if_match(req)))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        send_task(resp, self._tasks.cancel(task_id, req.context.principal, if_match=if_match(req)))


def if_match(req: falcon.Request) -> int | None:
    """The version ``If-Match`` names: ``3`` or ``"3"`` (no header, or ``*``: any version).

    A weak tag (``W/"3"``) never matches under If-Match's strong comparison (RFC 9110), so it fails the
    precondition; anything else that is not one version is a bad request.
    """
    raw = req.get_header("If-Match")
    if raw is None or raw.strip() == "*":
        return None
    value = raw.strip()
    if value.startswith("W/"):
        raise PreconditionFailed('a weak entity tag never matches If-Match; send the version, e.g. "3"')
    match = VERSION_TAG.fullmatch(value)
    if match is None:
        raise falcon.HTTPBadRequest(
            title="Bad Request", description=f'If-Match must be one task version such as 3 or "3", not {raw[:40]!r}'
        )
    return int(match.group(1) or match.group(2))


class Health:
    """``/healthz``: the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class Ready:
    """``/readyz``: DynamoDB, SQS and S3 answer and every required service has a live instance.

    One call per dependency, all at once, at most once per ``cache_s`` per worker (it is polled): the presence
    query is the DynamoDB call, ``probes`` the others (a name each, e.g. ``sqs``, ``s3``).
    """

    def __init__(
        self,
        presence: Callable[[], dict[str, list[str]]],
        requires: list[str],
        probes: Mapping[str, Callable[[], object]] | None = None,
        cache_s: float = 1.0,
    ) -> None:
        self._checks: dict[str, Callable[[], object]] = {"dynamodb": presence, **(probes or {})}
        self._requires = requires
        self._cache_s = cache_s
        self._checked_at = float("-inf")
        self._answer: tuple[int, dict[str, Any]] = (503, {})
        self._lock = threading.Lock()  # one check at a time; requests meanwhile wait for its answer
        self._pool = ThreadPoolExecutor(max_workers=len(self._checks), thread_name_prefix="readyz")

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        with self._lock:
            if time.monotonic() - self._checked_at > self._cache_s:
                self._answer = self._check()
                self._checked_at = time.monotonic()
            status, body = self._answer
        if status == 200:
            resp.media = body
        else:
            problem(
                resp,
                503,
                "not-ready",
                body.get("detail", "not ready"),
                **{k: v for k, v in body.items() if k != "detail"},
            )

    def _check(self) -> tuple[int, dict[str, Any]]:
        running = {name: self._pool.submit(check) for name, check in self._checks.items()}
        down: dict[str, str] = {}
        for name, future in running.items():
            try:
                future.result()
            except Exception as error:  # noqa: BLE001 - any failure to reach a dependency means not ready
                down[name] = _reason(error)
        if down:
            why = ", ".join(f"{name} ({reason})" for name, reason in sorted(down.items()))
            return 503, {"detail": f"AWS is not reachable: {why}", "unreachable": sorted(down)}
        alive: dict[str, list[str]] = running["dynamodb"].result()  # type: ignore[assignment]
        missing = [name for name in self._requires if not alive.get(name)]
        counts = {name: len(alive.get(name, [])) for name in sorted({*self._requires, *alive})}
        if missing:
            return 503, {"detail": f"waiting for: {', '.join(missing)}", "services": counts}
        return 200, {"status": "ready", "services": counts}


def _reason(error: Exception) -> str:
    """An AWS error's code (``InternalError``), else the exception's class (``EndpointConnectionError``)."""
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return str(code) if code else type(error).__name__
