"""``/openapi.json``: OpenAPI 3.1 for every endpoint; request schemas come from the pydantic models.

The task endpoints are described here, a task's history, the dead letters and the queues in
``openapi_history``, and the shared schemas, responses and headers in ``openapi_components``.
"""

from __future__ import annotations

from typing import Any

import falcon

from tq_gateway import openapi_history, openapi_streams
from tq_gateway.openapi_components import (
    GUARDED,
    NAME,
    NOT_FOUND,
    SHORT_PAGES,
    headers,
    ok,
    problem,
    ref,
    responses,
    schemas,
)
from tqcore.domain.model import Status
from tqcore.domain.requests import NAME_FILTER_MAX

#: The groups of operations (a generated client makes a module of each), and what each holds.
TAGS = {
    "tasks": "Submit, read, list, change and cancel tasks, one or a batch at a time, and read a task's events",
    "runs": "A task's attempts and each attempt's captured log",
    "dead letters": "Tasks that failed for good: list them and queue them again",
    "queues": "The depth of every queue",
    "health": "Liveness, readiness, metrics and this document (no authentication)",
}
TOO_LARGE = {"411": ref("LengthRequired", "responses"), "413": ref("BodyTooLarge", "responses")}


def _json_body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _if_match() -> dict[str, Any]:
    return {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": 'apply only to this version: `3` or `"3"` (`*`: any); a weak tag never matches (412); '
        "anything else is a 400",
        "schema": {"type": "string", "pattern": '^([0-9]{1,18}|"[0-9]{1,18}"|\\*)$'},
    }


def _task_paths() -> dict[str, Any]:
    task_ok = ok("the task", "Task", ETag="ETag")
    task_id = [ref("TaskId", "parameters")]
    return {
        "/v1/tasks": {
            "get": {
                "operationId": "listTasks",
                "tags": ["tasks"],
                "summary": "List tasks, newest first",
                "description": "A page of one group's tasks (all the caller's groups merged if none is named; for an "
                "admin, every group). " + SHORT_PAGES,
                "parameters": [
                    ref("Group", "parameters"),
                    _query(
                        "status", "only tasks in this status", {"type": "string", "enum": [s.value for s in Status]}
                    ),
                    _query("type", "only tasks of this type", NAME),
                    _query(
                        "name",
                        "only tasks whose name contains this text, ignoring case",
                        {"type": "string", "minLength": 1, "maxLength": NAME_FILTER_MAX},
                    ),
                    ref("Limit", "parameters"),
                    ref("Cursor", "parameters"),
                ],
                "responses": {
                    "200": ok("a page of tasks", "TaskPage"),
                    "400": problem("a cursor this listing did not hand out"),
                    "403": problem("not a member of the group"),
                    "422": problem("an invalid query parameter (errors: [{loc, msg}])"),
                    **GUARDED,
                },
            },
            "post": {
                "operationId": "submitTask",
                "tags": ["tasks"],
                "summary": "Submit a task",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": "same as the body's `idempotency_key` (both given and different: 400)",
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                    }
                ],
                "requestBody": _json_body("SubmitTask"),
                "responses": {
                    "201": ok("created", "Task", ETag="ETag", Location="Location"),
                    "200": ok(
                        "an idempotent replay: the task the same key and body created within 24 h",
                        "Task",
                        ETag="ETag",
                        Location="Location",
                        **{"Idempotent-Replayed": "IdempotentReplayed"},
                    ),
                    **TOO_LARGE,
                    "400": problem("malformed JSON, or the Idempotency-Key header and body differ"),
                    "403": problem("not a member of the group"),
                    "409": problem("the idempotency key was used with another body"),
                    "422": problem(
                        "an invalid body (errors: [{loc, msg}]), an unknown task type, a payload its type refuses (a "
                        "script not on the allow-list: errors name the refused argv items), or a schedule with no "
                        "run left"
                    ),
                    **GUARDED,
                },
            },
        },
        "/v1/tasks:batch": {"post": _batch()},
        "/v1/tasks/{task_id}": {
            "get": {
                "operationId": "getTask",
                "tags": ["tasks"],
                "summary": "Read a task; with `wait_s`, once it has ended (or `wait_s` later)",
                "parameters": [*task_id, openapi_streams.wait_parameter()],
                "responses": {
                    "200": task_ok,
                    **NOT_FOUND,
                    "422": problem("an invalid query parameter (errors: [{loc, msg}])"),
                    **GUARDED,
                    "503": problem(openapi_streams.FULL, **{"Retry-After": "RetryAfter"}),
                },
            },
            "patch": {
                "operationId": "updateTask",
                "tags": ["tasks"],
                "summary": "Change a task; a new schedule, payload or priority applies from the next run",
                "parameters": [*task_id, _if_match()],
                "requestBody": _json_body("UpdateTask"),
                "responses": {
                    "200": ok("the changed task", "Task", ETag="ETag"),
                    **TOO_LARGE,
                    "400": problem("malformed JSON or If-Match"),
                    **NOT_FOUND,
                    "409": problem("the task is terminal, or the change is not allowed in its state"),
                    "412": problem("If-Match names another version (or is a weak tag)"),
                    "422": problem(
                        "an invalid body (errors: [{loc, msg}]), a payload the task's type refuses (a script not on "
                        "the allow-list), or a schedule with no run left"
                    ),
                    **GUARDED,
                },
            },
            "delete": {
                "operationId": "cancelTask",
                "tags": ["tasks"],
                "summary": "Cancel a task; a running attempt is told to stop at its next heartbeat",
                "parameters": [*task_id, _if_match()],
                "responses": {
                    "200": ok("cancelled, or still running with cancel_requested: true", "Task", ETag="ETag"),
                    "400": problem("malformed If-Match"),
                    **NOT_FOUND,
                    "409": problem("the task already succeeded, failed or expired"),
                    "412": problem("If-Match names another version (or is a weak tag)"),
                    **GUARDED,
                },
            },
        },
    }


def _batch() -> dict[str, Any]:
    return {
        "operationId": "submitTasks",
        "tags": ["tasks"],
        "summary": "Submit up to 500 tasks, each answered on its own",
        "description": "Each item is a submit body, answered as `POST /v1/tasks` would answer it alone: `status` "
        "201 (created) or 200 (an idempotent replay: its own `idempotency_key` in the group was used with the same "
        "body, also by an earlier item of this batch) with the `task`, or the status and problem document of its "
        "error (403, 409, 413, 422; 503 for an item the store could not write while others were written: send it "
        "again with its key). Items are answered in request order. The body limit is `TQ_MAX_BATCH_BODY_BYTES` "
        "(default 1 MiB); nothing is written when the store cannot write any item (503).",
        "requestBody": _json_body("SubmitBatch"),
        "responses": {
            "200": ok("one result per submitted task, in request order", "BatchResult"),
            **TOO_LARGE,
            "400": problem("malformed JSON"),
            "422": problem("not 1 to 500 tasks (errors: [{loc, msg}])"),
            **GUARDED,
        },
    }


def _public_paths() -> dict[str, Any]:
    def text(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}

    def json_object(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}

    ready = {
        "description": "every required service has a live instance and AWS answers",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["status", "services"],
                    "properties": {
                        "status": {"const": "ready"},
                        "services": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                    },
                }
            }
        },
    }
    return {
        "/healthz": {
            "get": {
                "operationId": "health",
                "tags": ["health"],
                "summary": "Liveness: the process answers",
                "security": [],
                "responses": {
                    "200": {
                        "description": "alive",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["status"],
                                    "properties": {"status": {"const": "ok"}},
                                }
                            }
                        },
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "ready",
                "tags": ["health"],
                "summary": "Readiness",
                "security": [],
                "responses": {
                    "200": ready,
                    "503": problem(
                        "not ready: `unreachable` names the AWS services that did not answer (`dynamodb`, `sqs`, "
                        "`s3`); else `services` counts live instances per service"
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["health"],
                "summary": "Prometheus text exposition",
                "security": [],
                "responses": {"200": text("every metric of the gateway")},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["health"],
                "summary": "This document",
                "security": [],
                "responses": {"200": json_object("OpenAPI 3.1")},
            }
        },
    }


def build_spec() -> dict[str, Any]:
    """The OpenAPI document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tq",
            "version": "1.0.0",
            "description": "Distributed task queue and scheduler. Errors are RFC 9457 `application/problem+json`.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": name, "description": description} for name, description in TAGS.items()],
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a dev token (local stack), an API key or a JWT, as the gateway's TQ_AUTH accepts",
                }
            },
            "parameters": openapi_history.parameters(),
            "headers": headers(),
            "responses": responses(),
            "schemas": {**schemas(), **openapi_history.schemas()},
        },
        "security": [{"bearerAuth": []}],
        "paths": {**_task_paths(), **openapi_history.paths(), **openapi_streams.paths(), **_public_paths()},
    }


class OpenApi:
    """Serves the document built once at start-up."""

    def __init__(self) -> None:
        self._spec = build_spec()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._spec
