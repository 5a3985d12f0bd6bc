"""``/openapi.json``: OpenAPI 3.1 for the endpoints that exist, schemas derived from the pydantic models."""

from __future__ import annotations

from typing import Any

import falcon

from tq_gateway import openapi_history
from tqcore.domain.commands import SubmitTask, UpdateTask
from tqcore.domain.model import Overlap, Priority, Status

PROBLEM = {"$ref": "#/components/schemas/Problem"}
TS = {"type": ["string", "null"], "format": "date-time"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": PROBLEM}}}


def _task_schema() -> dict[str, Any]:
    nullable_str = {"type": ["string", "null"]}
    return {
        "type": "object",
        "required": ["id", "type", "group", "owner", "status", "version", "priority", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "type": {"type": "string"},
            "group": {"type": "string"},
            "owner": {"type": "string"},
            "name": nullable_str,
            "description": nullable_str,
            "payload": {},
            "priority": {"enum": [p.value for p in Priority]},
            "status": {"enum": [s.value for s in Status]},
            "version": {"type": "integer"},
            "attempts": {"type": "integer"},
            "retries": {"type": "integer"},
            "retry": {"type": "object"},
            "timeout_s": {"type": "integer"},
            "schedule": {"type": ["object", "null"]},
            "overlap": {"enum": [o.value for o in Overlap]},
            "expires_at": TS,
            "idempotency_key": nullable_str,
            "worker": nullable_str,
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": TS,
            "queued_at": TS,
            "started_at": TS,
            "finished_at": TS,
            "next_run_at": TS,
            "lease_expires_at": TS,
            "run_count": {"type": "integer"},
            "resends": {"type": "integer"},
            "poison_strikes": {"type": "integer"},
            "claim_seq": {"type": ["integer", "null"]},
            "cancel_requested": {"type": "boolean"},
            "next_slot_at": TS,
            "waiting_slot": TS,
            "parent_id": nullable_str,
            "last_error": {"type": ["object", "null"]},
            "result": {},
        },
    }


def build_spec() -> dict[str, Any]:
    """The OpenAPI document."""
    submit = SubmitTask.model_json_schema(ref_template="#/components/schemas/{model}")
    update = UpdateTask.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = {**submit.pop("$defs", {}), **update.pop("$defs", {})}
    task_id = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
    version = {
        "name": "If-Match",
        "in": "header",
        "description": 'the version the change applies to: 3 or "3"',
        "schema": {"type": "string"},
    }
    auth_errors = {"401": _problem("missing or unknown token")}
    task_ok = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Task"}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tq", "version": "1.0.0", "description": "Distributed task queue and scheduler."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": openapi_history.parameters(),
            "schemas": {
                "SubmitTask": submit,
                "UpdateTask": update,
                **defs,
                "Task": _task_schema(),
                **openapi_history.schemas(),
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "errors": {"type": "array", "items": {"type": "object"}},
                    },
                },
            },
        },
        "security": [{"bearer": []}],
        "paths": {
            "/v1/tasks": {
                "post": {
                    "summary": "Submit a task",
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubmitTask"}}},
                    },
                    "responses": {
                        "201": {"description": "created", **task_ok},
                        "200": {"description": "idempotent replay (header Idempotent-Replayed: true)", **task_ok},
                        "400": _problem("malformed JSON"),
                        **auth_errors,
                        "403": _problem("not a member of the group"),
                        "409": _problem("idempotency key reused with another body"),
                        "413": _problem("body too large"),
                        "422": _problem("invalid body or unknown task type"),
                        "503": _problem("storage throttled or unreachable"),
                    },
                }
            },
            "/v1/tasks/{task_id}": {
                "get": {
                    "summary": "Read a task",
                    "parameters": [task_id],
                    "responses": {
                        "200": {"description": "the task (header ETag: its version)", **task_ok},
                        **auth_errors,
                        "404": _problem("no such task"),
                    },
                },
                "patch": {
                    "summary": "Change a task; a new schedule, payload or priority applies from the next run",
                    "parameters": [task_id, version],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UpdateTask"}}},
                    },
                    "responses": {
                        "200": {"description": "the changed task", **task_ok},
                        "400": _problem("malformed JSON or If-Match"),
                        **auth_errors,
                        "404": _problem("no such task"),
                        "409": _problem("the task is terminal, or the change is not allowed in its state"),
                        "412": _problem("If-Match names another version"),
                        "422": _problem("invalid body, or a schedule with no run left"),
                    },
                },
                "delete": {
                    "summary": "Cancel a task; a running attempt is asked to stop",
                    "parameters": [task_id, version],
                    "responses": {
                        "200": {"description": "cancelled, or running with cancel_requested", **task_ok},
                        **auth_errors,
                        "404": _problem("no such task"),
                        "409": _problem("the task already succeeded, failed or expired"),
                        "412": _problem("If-Match names another version"),
                    },
                },
            },
            **openapi_history.paths(),
            "/healthz": {"get": {"security": [], "responses": {"200": {"description": "alive"}}}},
            "/readyz": {
                "get": {"security": [], "responses": {"200": {"description": "ready"}, "503": _problem("not ready")}}
            },
            "/metrics": {"get": {"security": [], "responses": {"200": {"description": "Prometheus text"}}}},
            "/openapi.json": {"get": {"security": [], "responses": {"200": {"description": "this document"}}}},
        },
    }


class OpenApi:
    """Serves the document built once at start-up."""

    def __init__(self) -> None:
        self._spec = build_spec()

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self._spec
