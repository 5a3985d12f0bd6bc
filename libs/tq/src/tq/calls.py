"""What each client method sends and how its answer is read, shared by ``Client`` and ``AsyncClient``: the twins
differ only in how they send a :class:`Call` (and sleep), so they cannot drift apart."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from tq.errors import ApiError
from tq.models import BatchItem, CancelledTasks, Event, Overview, Page, Queue, Redriven, Resource, Run, Task
from tq.retries import Retries, Retrying

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

#: Where the client finds the API when neither ``url`` nor ``TQ_URL`` says (``make run``'s gateway).
DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds to connect, send, or wait for an ordinary answer (``wait``, ``stream`` and batches wait longer).
DEFAULT_TIMEOUT_S = 10.0
#: The most items ``POST /v1/tasks:batch`` takes: ``submit_many`` sends bigger lists in chunks of this size.
BATCH_SIZE = 500
#: The longest ``wait_s`` the API takes.
MAX_WAIT_S = 30
#: How much longer than the server's own wait (or keep-alive interval) a read may take before it counts as broken.
READ_GRACE_S = 15.0
#: How long a batch's answer may take: 500 writes and sends under load take seconds, and a read that times out is
#: sent again (replayed, but as costly as the first), so give it time rather than load the gateway twice.
BATCH_READ_S = 60.0
#: The problem type of an answer the client cannot use.
UNEXPECTED = "urn:tq:client:unexpected-answer"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request of the API and how to read its answer; ``repeatable``: safe to send again after a broken
    connection or a 503 (it changes nothing twice)."""

    method: str
    path: str
    read: Callable[[httpx.Response], T]
    params: Mapping[str, str | int] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    repeatable: bool = True
    read_timeout_s: float | None = None

    def request(self, http: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The request on ``http``'s base URL, headers and timeouts."""
        timeout = http.timeout if self.read_timeout_s is None else _with_read(http.timeout, self.read_timeout_s)
        return http.build_request(
            self.method,
            self.path,
            params=dict(self.params),
            json=None if self.body is None else to_jsonable_python(self.body),
            headers=dict(self.headers),
            timeout=timeout,
        )


def _with_read(timeout: httpx.Timeout, read_s: float) -> httpx.Timeout:
    return httpx.Timeout(connect=timeout.connect, read=read_s, write=timeout.write, pool=timeout.pool)


def connection(url: str | None, token: str | None) -> tuple[str, dict[str, str]]:
    """The base URL and headers of a client: the arguments, else ``TQ_URL`` / ``TQ_TOKEN``, else the local stack
    without a token."""
    base = url or os.environ.get("TQ_URL") or DEFAULT_URL
    token = token or os.environ.get("TQ_TOKEN")
    headers = {"Accept": "application/json", "User-Agent": "tq-sdk-python"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return base.rstrip("/"), headers


def checked(response: httpx.Response) -> httpx.Response:
    """The response if it is a success; else raises :class:`ApiError` with its problem document (``read`` it
    first if it was streamed)."""
    if response.is_success:
        return response
    raise ApiError(response.status_code, problem_of(response))


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The answer's problem document; a made-up one for an error that is not problem+json (say, a proxy's page)."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and "title" in document:
        return document
    return {
        "type": "about:blank",
        "title": response.reason_phrase or "Error",
        "status": response.status_code,
        "detail": response.text[:200],
    }


def _model(model: type[M]) -> Callable[[httpx.Response], M]:
    def read(response: httpx.Response) -> M:
        try:
            return model.model_validate_json(checked(response).content)
        except ValidationError as error:
            where = f"{response.request.method} {response.request.url.path}"
            raise unexpected(response.status_code, where, model.__name__, error) from error

    return read


def unexpected(status: int, where: str, expected: str, error: ValidationError) -> ApiError:
    """The error for a success that is not what was asked for (a captive portal, a wrong URL): an API error with
    a made-up problem, like any other answer the client cannot use."""
    first = error.errors(include_url=False)[0]
    why = f"{'.'.join(map(str, first['loc'])) or 'the body'}: {first['msg']}"
    return ApiError(
        status,
        {
            "type": UNEXPECTED,
            "title": "Unexpected answer",
            "status": status,
            "detail": f"the answer of {where} does not read as {expected} ({why})",
        },
    )


class _QueueList(Resource):
    queues: list[Queue]


class _BatchAnswer(Resource):
    items: list[BatchItem]


def _text(response: httpx.Response) -> str:
    return checked(response).text


def no_body(response: httpx.Response) -> None:
    """For a streamed answer, read apart: only its status is checked."""
    checked(response)


def task_path(task_id: str, *rest: str) -> str:
    """``/v1/tasks/{id}/...`` with every segment escaped (``/``, and the dot segments URLs resolve): an id never
    reaches another route."""
    if not task_id:
        raise ValueError("a task id cannot be empty")
    return "/".join(["/v1/tasks", *(_segment(part) for part in (task_id, *rest))])


def _segment(part: str) -> str:
    escaped = quote(part, safe="")
    return escaped.replace(".", "%2E") if escaped in {".", ".."} else escaped


def _query(**values: str | int | None) -> dict[str, str | int]:
    return {name: value for name, value in values.items() if value is not None}


def new_idempotency_key() -> str:
    """A fresh idempotency key: every submit carries one, so sending it again never runs it twice."""
    return f"tq-py-{uuid.uuid4().hex}"


def submit_body(task_type: str, group: str, payload: Any, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A submit's body with an idempotency key (the one given, else a fresh one)."""
    body: dict[str, Any] = {"type": task_type, "group": group, **fields}
    if payload is not None:
        body["payload"] = payload
    return _keyed(body)


def _keyed(body: Mapping[str, Any]) -> dict[str, Any]:
    keyed = dict(body)
    if keyed.get("idempotency_key") is None:
        keyed["idempotency_key"] = new_idempotency_key()
    return keyed


def submit(task_type: str, group: str, payload: Any, fields: Mapping[str, Any]) -> Call[Task]:
    """``POST /v1/tasks``: repeatable because it is keyed."""
    return Call("POST", "/v1/tasks", _model(Task), body=submit_body(task_type, group, payload, fields))


#: An item's status when the gateway wrote part of a batch and then met throttled storage: the item was not written
#: (or its keyed write is replayed), so it is sent again, with its key.
RETRIED_ITEM = frozenset({503})


class SubmitMany:
    """``submit_many``'s requests: ``POST /v1/tasks:batch`` per chunk of :data:`BATCH_SIZE` keyed bodies (so each
    chunk is repeatable), then again for the items answered 503 as the retry budget allows (the server asks for
    exactly that after a partial write, and only the client holds the keys it generated)."""

    def __init__(self, tasks: Iterable[Mapping[str, Any]], retries: Retries) -> None:
        self._bodies = [_keyed(body) for body in tasks]
        self._items: list[BatchItem | None] = [None] * len(self._bodies)
        self._todo = list(range(len(self._bodies)))
        self._retrying = Retrying(retries, repeatable=True)

    def calls(self) -> list[tuple[list[int], Call[list[BatchItem]]]]:
        """This round's requests, each with the positions of the bodies it carries."""
        chunks = (self._todo[start : start + BATCH_SIZE] for start in range(0, len(self._todo), BATCH_SIZE))
        return [(chunk, _batch([self._bodies[n] for n in chunk])) for chunk in chunks]

    def answered(self, chunk: list[int], items: list[BatchItem]) -> None:
        """Keep a request's answer, one item per body it carried."""
        if len(items) != len(chunk):
            detail = f"POST /v1/tasks:batch answered {len(items)} items for {len(chunk)} tasks"
            raise ApiError(200, {"type": UNEXPECTED, "title": "Unexpected answer", "status": 200, "detail": detail})
        for n, item in zip(chunk, items, strict=True):
            self._items[n] = item

    def pause(self) -> float | None:
        """The pause before the next round (only the items to send again), or ``None``: :meth:`results` is final."""
        self._todo = [n for n, item in enumerate(self._items) if item is not None and item.status in RETRIED_ITEM]
        pause = self._retrying.again() if self._todo else None
        if pause is None:
            self._todo = []
        return pause

    def results(self) -> list[BatchItem]:
        """One item per body, in order (an item still 503 once the budget is spent stays as answered)."""
        return [item for item in self._items if item is not None]


def _batch(bodies: list[dict[str, Any]]) -> Call[list[BatchItem]]:
    return Call(
        "POST",
        "/v1/tasks:batch",
        lambda r: _model(_BatchAnswer)(r).items,
        body={"tasks": bodies},
        read_timeout_s=BATCH_READ_S,
    )


def get(task_id: str, wait_s: int | None = None) -> Call[Task]:
    """``GET /v1/tasks/{id}``, waiting up to ``wait_s`` for it to end (the read may take that much longer)."""
    if not wait_s:
        return Call("GET", task_path(task_id), _model(Task))
    return Call(
        "GET", task_path(task_id), _model(Task), params={"wait_s": wait_s}, read_timeout_s=wait_s + READ_GRACE_S
    )


def list_page(
    group: str | None,
    status: str | None,
    task_type: str | None,
    limit: int | None,
    cursor: str | None,
    name: str | None = None,
) -> Call[Page[Task]]:
    """``GET /v1/tasks``: one page (``name``: the tasks whose name contains it, ignoring case)."""
    params = _query(group=group, status=status, type=task_type, name=name, limit=limit, cursor=cursor)
    return Call("GET", "/v1/tasks", _model(Page[Task]), params=params)


def update(task_id: str, if_match: int | str | None, changes: Mapping[str, Any]) -> Call[Task]:
    """``PATCH /v1/tasks/{id}``: not repeated (a second send may meet the version it made)."""
    headers = {} if if_match is None else {"If-Match": str(if_match)}
    return Call("PATCH", task_path(task_id), _model(Task), body=dict(changes), headers=headers, repeatable=False)


def cancel(task_id: str, if_match: int | str | None) -> Call[Task]:
    """``DELETE /v1/tasks/{id}``: not repeated (a second send may answer 409 for the task it cancelled)."""
    headers = {} if if_match is None else {"If-Match": str(if_match)}
    return Call("DELETE", task_path(task_id), _model(Task), headers=headers, repeatable=False)


def pause(task_id: str) -> Call[Task]:
    """``POST /v1/tasks/{id}/pause``: repeated safely (pausing a paused task changes nothing)."""
    return Call("POST", task_path(task_id, "pause"), _model(Task))


def resume(task_id: str) -> Call[Task]:
    """``POST /v1/tasks/{id}/resume``: not repeated (a second send answers 409 for the task it resumed)."""
    return Call("POST", task_path(task_id, "resume"), _model(Task), repeatable=False)


def runs_page(task_id: str, cursor: str | None) -> Call[Page[Run]]:
    """``GET /v1/tasks/{id}/runs``: one page, newest first."""
    return Call("GET", task_path(task_id, "runs"), _model(Page[Run]), params=_query(cursor=cursor))


def log(task_id: str, run_id: str) -> Call[str]:
    """``GET /v1/tasks/{id}/runs/{run_id}/log``."""
    return Call("GET", task_path(task_id, "runs", run_id, "log"), _text, headers={"Accept": "text/plain"})


def events_page(task_id: str, cursor: str | None) -> Call[Page[Event]]:
    """``GET /v1/tasks/{id}/events``: one page, oldest first."""
    return Call("GET", task_path(task_id, "events"), _model(Page[Event]), params=_query(cursor=cursor))


def redrive(task_id: str) -> Call[Task]:
    """``POST /v1/tasks/{id}/redrive``: not repeated (a second send answers 409 for the task it redrove)."""
    return Call("POST", task_path(task_id, "redrive"), _model(Task), repeatable=False)


def dlq_page(
    group: str | None, limit: int | None, cursor: str | None, task_type: str | None = None
) -> Call[Page[Task]]:
    """``GET /v1/dlq``: one page, newest first."""
    params = _query(group=group, type=task_type, limit=limit, cursor=cursor)
    return Call("GET", "/v1/dlq", _model(Page[Task]), params=params)


def schedules_page(group: str | None, task_type: str | None, limit: int | None, cursor: str | None) -> Call[Page[Task]]:
    """``GET /v1/schedules``: one page, newest first."""
    params = _query(group=group, type=task_type, limit=limit, cursor=cursor)
    return Call("GET", "/v1/schedules", _model(Page[Task]), params=params)


def redrive_dlq(
    group: str, ids: list[str] | None, limit: int | None, dry_run: bool, task_type: str | None = None
) -> Call[Redriven]:
    """``POST /v1/dlq/redrive``: repeated only as a dry run (a second redrive takes the next ``limit``)."""
    body = _group_action(group, ids, dry_run, limit=limit, type=task_type)
    return Call("POST", "/v1/dlq/redrive", _model(Redriven), body=body, repeatable=dry_run)


def cancel_many(
    group: str, ids: list[str] | None, status: str | None, task_type: str | None, limit: int | None, dry_run: bool
) -> Call[CancelledTasks]:
    """``POST /v1/tasks:cancel``: repeated only as a dry run (a second cancel would take the next ``limit``)."""
    body = _group_action(group, ids, dry_run, status=status, type=task_type, limit=limit)
    return Call("POST", "/v1/tasks:cancel", _model(CancelledTasks), body=body, repeatable=dry_run)


def _group_action(group: str, ids: list[str] | None, dry_run: bool, **options: str | int | None) -> dict[str, Any]:
    """The body of an action on many tasks of a group: options left unset are left out (the server's defaults)."""
    body: dict[str, Any] = {"group": group, "dry_run": dry_run, **_query(**options)}
    if ids is not None:
        body["ids"] = ids
    return body


def queues() -> Call[list[Queue]]:
    """``GET /v1/queues``."""
    return Call("GET", "/v1/queues", lambda r: _model(_QueueList)(r).queues)


def overview() -> Call[Overview]:
    """``GET /v1/overview``."""
    return Call("GET", "/v1/overview", _model(Overview))
