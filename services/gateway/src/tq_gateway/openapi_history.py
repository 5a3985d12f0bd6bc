"""The OpenAPI description of a task's history (runs, events) and of the dead letters; merged by ``openapi``."""

from __future__ import annotations

from typing import Any

from tqcore.domain.model import EventType, RunStatus
from tqcore.domain.requests import RedriveDeadLetters

TS = {"type": ["string", "null"], "format": "date-time"}
PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": PROBLEM}}}


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def parameters() -> dict[str, Any]:
    """Reusable parameters: the task id and the paging query."""
    return {
        "TaskId": {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}},
        "Limit": {
            "name": "limit",
            "in": "query",
            "description": "page size; out of range or not an integer: 422",
            "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
        },
        "Cursor": {
            "name": "cursor",
            "in": "query",
            "description": "opaque `next_cursor` of the previous page; a cursor this listing did not hand out: 400",
            "schema": {"type": "string", "maxLength": 1024},
        },
    }


def schemas() -> dict[str, Any]:
    """Schemas of runs, events, pages of tasks and the dead-letter redrive."""
    event = {
        "type": "object",
        "required": ["seq", "type", "at", "actor", "data"],
        "properties": {
            "seq": {"type": "integer", "description": "the task version the event produced"},
            "type": {"enum": [t.value for t in EventType]},
            "at": {"type": "string", "format": "date-time"},
            "actor": {"type": "string"},
            "data": {"type": "object"},
        },
    }
    cursor = {"type": ["string", "null"]}
    redrive = RedriveDeadLetters.model_json_schema(ref_template="#/components/schemas/{model}")
    return {
        "Run": _run_schema(),
        "RunPage": _page(_ref("Run"), cursor),
        "Event": event,
        "EventList": {"type": "object", "required": ["items"], "properties": {"items": _items(_ref("Event"))}},
        "TaskPage": _page(_ref("Task"), cursor),
        "RedriveDeadLetters": redrive,
        "Redriven": {
            "type": "object",
            "required": ["count", "ids"],
            "properties": {
                "count": {"type": "integer"},
                "ids": {"type": "array", "items": {"type": "string"}},
                "dry_run": {"type": "boolean"},
            },
        },
    }


def _run_schema() -> dict[str, Any]:
    error = {"type": ["object", "null"], "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}
    properties = {
        "run_id": {"type": "string", "description": "`<run>.<attempt>`"},
        "attempt": {"type": "integer"},
        "status": {"enum": [s.value for s in RunStatus]},
        "scheduled_for": {**TS, "description": "the task's next_run_at when it was queued, if it had one"},
        "started_at": {"type": "string", "format": "date-time"},
        "finished_at": TS,
        "duration_ms": {"type": ["integer", "null"]},
        "worker": {"type": ["string", "null"]},
        "error": error,
        "log_size": {"type": ["integer", "null"]},
        "log_expires_at": TS,
    }
    return {"type": "object", "required": list(properties), "properties": properties}


def _items(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def _page(item: dict[str, Any], cursor: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {"items": _items(item), "next_cursor": cursor},
    }


def paths() -> dict[str, Any]:
    """The endpoints of a task's history and of the dead letters."""
    auth = {"401": _problem("missing or unknown token"), "503": _problem("storage throttled or unreachable")}
    not_found = {"404": _problem("no such task, or not in the caller's groups")}
    paging = {"400": _problem("malformed cursor"), "422": _problem("invalid limit (errors: [{loc, msg}])")}
    task_id = [_param("TaskId")]
    return {
        "/v1/tasks/{task_id}/runs": {
            "get": {
                "summary": "A task's runs, newest first: one item per attempt (a projection of its events)",
                "parameters": [*task_id, _param("Limit"), _param("Cursor")],
                "responses": {"200": _ok("a page of runs", "RunPage"), **paging, **auth, **not_found},
            }
        },
        "/v1/tasks/{task_id}/events": {
            "get": {
                "summary": "A task's event history, oldest first",
                "parameters": task_id,
                "responses": {"200": _ok("every event", "EventList"), **auth, **not_found},
            }
        },
        "/v1/tasks/{task_id}/redrive": {
            "post": {
                "summary": "Queue a failed task again with a fresh retry budget (no body)",
                "parameters": task_id,
                "responses": {
                    "200": _ok("the task, queued (header ETag)", "Task"),
                    **auth,
                    **not_found,
                    "409": _problem("the task is not failed"),
                },
            }
        },
        "/v1/dlq": {"get": _dlq_list()},
        "/v1/dlq/redrive": {"post": _dlq_redrive(auth)},
    }


def _dlq_list() -> dict[str, Any]:
    group = {
        "name": "group",
        "in": "query",
        "description": "the group to list; without it, all the caller's groups merged (required for admins)",
        "schema": {"type": "string"},
    }
    return {
        "summary": "Dead-lettered (failed) tasks, newest first by finished_at",
        "parameters": [group, _param("Limit"), _param("Cursor")],
        "responses": {
            "200": _ok("a page of failed tasks", "TaskPage"),
            "400": _problem("malformed cursor"),
            "401": _problem("missing or unknown token"),
            "403": _problem("not a member of the group"),
            "422": _problem("invalid limit or group, or an admin named no group"),
            "503": _problem("storage throttled or unreachable"),
        },
    }


def _dlq_redrive(auth: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": "Redrive a group's dead letters: the given ids, or else the newest `limit`",
        "description": "Ids that are not failed or not in the group are skipped. With `ids`, `limit` is ignored. "
        "`dry_run` lists what would be redriven and changes nothing.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RedriveDeadLetters")}}},
        "responses": {
            "200": _ok("what was (or, on a dry run, would be) redriven", "Redriven"),
            "400": _problem("malformed JSON"),
            **auth,
            "403": _problem("not a member of the group"),
            "413": _problem("body too large"),
            "422": _problem("invalid body"),
        },
    }
