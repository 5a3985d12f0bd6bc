"""Reusable parts of the OpenAPI document: schemas of requests and responses, problem responses, headers.

The task's schema is generated from the gateway's view model (``tq_gateway.views``); the runs', events' and
queues' list every field ``run_to_dict``, ``event_to_dict`` and ``queue_to_dict`` emit, all of them required
(nullable ones as ``["<type>", "null"]``). Response schemas stay open (no ``additionalProperties: false``)
because the contract lets the API add fields. Unit tests keep the field lists equal to what is served.
"""

from __future__ import annotations

from typing import Any

from tq_gateway.problems import PROBLEM_JSON
from tq_gateway.views import TaskView
from tqcore.domain.commands import MAX_BATCH, SubmitTask, UpdateTask
from tqcore.domain.model import EventType, Priority, RunStatus
from tqcore.domain.requests import CancelTasks, RedriveDeadLetters

TS = {"type": "string", "format": "date-time"}
NULLABLE_TS = {"type": ["string", "null"], "format": "date-time"}
NULLABLE_STR = {"type": ["string", "null"]}
#: A group or task type name, as ``tqcore.domain.commands.Name`` accepts it.
NAME = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:\\-]*$"}


def ref(name: str, kind: str = "schemas") -> dict[str, str]:
    """A ``$ref`` to a component."""
    return {"$ref": f"#/components/{kind}/{name}"}


def problem(description: str, **headers: str) -> dict[str, Any]:
    """A problem+json response; ``headers`` maps a header name to its component (all of them always sent)."""
    response: dict[str, Any] = {"description": description, "content": {PROBLEM_JSON: {"schema": ref("Problem")}}}
    if headers:
        response["headers"] = {name: ref(component, "headers") for name, component in headers.items()}
    return response


def ok(description: str, schema: str, **headers: str) -> dict[str, Any]:
    """A JSON response of a component schema, with the named header components."""
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": ref(schema)}},
    }
    if headers:
        response["headers"] = {name: ref(component, "headers") for name, component in headers.items()}
    return response


#: How a listing's pages end (both listings of tasks say it).
SHORT_PAGES = (
    "A page ends at `limit` tasks or at `TQ_LIST_PAGE_BYTES` (default 4 MiB) of tasks, whichever comes first, so "
    "it may hold fewer than `limit` and still have a `next_cursor`; a filtered page may even be empty. The page "
    "after it starts right after its last task: follow `next_cursor` until it is null."
)
#: The auth, rate-limit and availability answers every authenticated operation may give.
GUARDED = {
    "401": ref("Unauthorized", "responses"),
    "429": ref("TooManyRequests", "responses"),
    "503": ref("Unavailable", "responses"),
}
NOT_FOUND = {"404": ref("NotFound", "responses")}


def responses() -> dict[str, Any]:
    """Problem responses every authenticated operation (or every one that reads a body) may answer."""
    return {
        "Unauthorized": problem("missing or unknown bearer token", **{"WWW-Authenticate": "WWWAuthenticate"}),
        "TooManyRequests": problem(
            "the caller's rate limit is exhausted, or its address's budget of failed authentications",
            **{"Retry-After": "RetryAfter"},
        ),
        "Unavailable": problem("storage throttled or a dependency unreachable", **{"Retry-After": "RetryAfter"}),
        "NotFound": problem("no such task, or it is not in the caller's groups (its existence is not revealed)"),
        "MalformedBody": problem("the body is empty, not valid JSON, or not a JSON object"),
        "BodyTooLarge": problem(
            "the body exceeds the limit (default 256 KiB), the payload holds more JSON nodes (values and object "
            "keys) than `TQ_MAX_JSON_NODES` (default 10,000), or the task would be too large to store"
        ),
        "LengthRequired": problem(
            "the body was sent with `Transfer-Encoding` (chunked): send it with a `Content-Length` instead, so the "
            "gateway can read it under its deadline without holding a thread"
        ),
    }


def headers() -> dict[str, Any]:
    """Response headers."""
    return {
        "ETag": {
            "description": "the task's version as a quoted entity tag; `If-Match` takes it (quoted or plain)",
            "required": True,
            "schema": {"type": "string", "pattern": '^"[0-9]+"$'},
        },
        "Location": {
            "description": "the task's URL",
            "required": True,
            "schema": {"type": "string", "pattern": "^/v1/tasks/[A-Za-z0-9_-]+$"},
        },
        "IdempotentReplayed": {
            "description": "the answer replays an earlier submit with the same idempotency key and body",
            "required": True,
            "schema": {"type": "string", "enum": ["true"]},
        },
        "RetryAfter": {
            "description": "seconds to wait before retrying",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},
        },
        "WWWAuthenticate": {
            "description": "the auth scheme to use: Bearer",
            "required": True,
            "schema": {"type": "string", "pattern": "^Bearer"},
        },
    }


def schemas() -> dict[str, Any]:
    """Every component schema: request bodies and the task from the pydantic models, the rest as the codec emits
    them."""
    submit, update, redrive, cancel = (
        model.model_json_schema(ref_template="#/components/schemas/{model}")
        for model in (SubmitTask, UpdateTask, RedriveDeadLetters, CancelTasks)
    )
    task = TaskView.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    defs = {
        **submit.pop("$defs", {}),
        **update.pop("$defs", {}),
        **redrive.pop("$defs", {}),
        **cancel.pop("$defs", {}),
        **task.pop("$defs"),
    }
    _constrain_schedule_spec(defs["ScheduleSpec"])
    # UpdateTask's validator: name at least one field (``{}`` is a 422).
    update["minProperties"] = 1
    return {
        "SubmitTask": submit,
        "UpdateTask": update,
        "RedriveDeadLetters": redrive,
        "CancelTasks": cancel,
        **defs,
        "Task": task,
        "Problem": _problem(),
        **_batch_schemas(),
    }


def _batch_schemas() -> dict[str, Any]:
    """The batch submit's body and answer."""
    created = {
        "type": "object",
        "title": "BatchSubmitted",
        "required": ["status", "task"],
        "properties": {
            "status": {"type": "integer", "enum": [201, 200], "description": "201 created, 200 replayed"},
            "task": ref("Task"),
        },
    }
    refused = {
        "type": "object",
        "title": "BatchRefused",
        "required": ["status", "error"],
        "properties": {
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "error": ref("Problem"),
        },
    }
    return {
        "SubmitBatch": {
            "type": "object",
            "required": ["tasks"],
            "additionalProperties": False,
            "properties": {
                "tasks": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH, "items": ref("SubmitTask")},
            },
        },
        "BatchSubmitted": created,
        "BatchRefused": refused,
        "BatchResult": {
            "type": "object",
            "required": ["items"],
            "properties": {
                "items": {"type": "array", "items": {"oneOf": [ref("BatchSubmitted"), ref("BatchRefused")]}},
            },
        },
    }


def _constrain_schedule_spec(spec: dict[str, Any]) -> None:
    """Add what ScheduleSpec's model validator checks and JSON Schema can say: exactly one kind."""
    spec["description"] = (
        "Exactly one of `at`, `every_s` or `cron` (the others absent or null); `timezone` only with `cron`; "
        "`start_at`/`end_at` only with `every_s` or `cron`, and `end_at` after `start_at`. Timestamps are RFC 3339 "
        "with an offset, between 1970 and 9000. Anything else is a 422."
    )
    null = {"type": "null"}
    spec["oneOf"] = [
        {"required": ["at"], "properties": {"at": TS, "start_at": null, "end_at": null, "timezone": null}},
        {"required": ["every_s"], "properties": {"every_s": {"type": "number"}, "timezone": null}},
        {"required": ["cron"], "properties": {"cron": {"type": "string"}}},
    ]


def _problem() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "RFC 9457 problem details; some problems add members (e.g. `services` on /readyz).",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {"type": "string"},
            "errors": {
                "type": "array",
                "description": "validation errors (422)",
                "items": {
                    "type": "object",
                    "required": ["loc", "msg"],
                    "properties": {
                        "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                        "msg": {"type": "string"},
                    },
                },
            },
        },
    }


def run_schema() -> dict[str, Any]:
    """One item of a task's runs."""
    error = {
        "type": ["object", "null"],
        "required": ["type", "message"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
    }
    properties = {
        "run_id": {"type": "string", "description": "`<run>.<attempt>`"},
        "attempt": {"type": "integer", "minimum": 0},
        "status": {"type": "string", "enum": [s.value for s in RunStatus]},
        "scheduled_for": {**NULLABLE_TS, "description": "the task's next_run_at when it was queued, if it had one"},
        "started_at": TS,
        "finished_at": NULLABLE_TS,
        "duration_ms": {"type": ["integer", "null"], "minimum": 0},
        "worker": NULLABLE_STR,
        "error": error,
        "log_size": {"type": ["integer", "null"], "minimum": 0, "description": "bytes of captured output"},
        "log_expires_at": NULLABLE_TS,
    }
    return {"type": "object", "required": list(properties), "properties": properties}


def event_schema() -> dict[str, Any]:
    """One item of a task's events."""
    return {
        "type": "object",
        "required": ["seq", "type", "at", "actor", "data"],
        "properties": {
            "seq": {"type": "integer", "minimum": 1, "description": "the task version the event produced"},
            "type": {"type": "string", "enum": [t.value for t in EventType]},
            "at": TS,
            "actor": {"type": "string", "description": "the user, or scheduler / executor:<worker> / reaper"},
            "data": {
                "type": "object",
                "description": "what the event records; a `failed` event's `retryable` says whether another attempt"
                " follows (false after the last retry, or at once when the handler raised `Permanent`)",
            },
        },
    }


def queue_schema() -> dict[str, Any]:
    """One item of ``GET /v1/queues``."""
    count = {"type": "integer", "minimum": 0}
    return {
        "type": "object",
        "required": ["name", "pool", "priority", "depth", "in_flight", "dlq_depth"],
        "properties": {
            "name": {"type": "string"},
            "pool": {"type": "string", "description": "the executor pool that reads the queue (`TQ_POOL`)"},
            "priority": {"type": "string", "enum": [p.value for p in Priority]},
            "depth": {**count, "description": "messages waiting (approximate)"},
            "in_flight": {**count, "description": "messages received and not yet deleted (approximate)"},
            "dlq_depth": {**count, "description": "messages in the queue's dead-letter queue (approximate)"},
        },
    }
