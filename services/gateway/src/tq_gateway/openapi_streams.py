"""The OpenAPI description of waiting for a task: ``wait_s`` on a read, and the task's event stream (SSE)."""

from __future__ import annotations

from typing import Any

from tq_gateway.openapi_components import GUARDED, NOT_FOUND, problem, ref
from tqcore.domain.requests import MAX_WAIT_S

#: What a full replica answers a wait or a stream (besides storage trouble).
FULL = (
    "storage throttled or a dependency unreachable, or this replica holds as many streams and waits as it may "
    "(`TQ_GATEWAY_STREAMS`): try again after `Retry-After`"
)


def wait_parameter() -> dict[str, Any]:
    """``GET /v1/tasks/{id}?wait_s=``."""
    return {
        "name": "wait_s",
        "in": "query",
        "required": False,
        "description": f"wait up to this many seconds (0-{MAX_WAIT_S}) for the task to end (succeeded, failed, "
        "cancelled or expired; a repeating task ends only that way too, not when a run ends) and answer as soon as "
        "it has; after that long, answer the task as it is. 0 or absent: answer at once. Out of range: 422",
        "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S, "default": 0},
    }


def paths() -> dict[str, Any]:
    """``GET /v1/tasks/{task_id}/stream``."""
    return {
        "/v1/tasks/{task_id}/stream": {
            "get": {
                "operationId": "streamTaskEvents",
                "tags": ["tasks"],
                "summary": "A task's events and progress as Server-Sent Events, as they happen",
                "description": "Each event of the task's history as `id: <seq>`, `event: <type>`, `data: <the event "
                "as an item of /events>`, oldest first, from after `Last-Event-ID` (else from the first event); "
                'progress reports as `event: progress` with `data: {"fraction", "message", "at"}` and no `id`. '
                "Keep-alive comments (`: ping`) while nothing happens. The stream ends after the task's terminal "
                "event (at once, after the replay, for a task that has ended already); else after "
                "`TQ_STREAM_MAX_S` or when the replica stops: reconnect with `Last-Event-ID` (the `retry:` field "
                "says how soon).",
                "parameters": [
                    ref("TaskId", "parameters"),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "the `id` of the last event received: start after it (an id this task "
                        "never had: 400)",
                        "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the stream (`text/event-stream`), sent message by message",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "400": problem("Last-Event-ID is not the id of an event of this task"),
                    **NOT_FOUND,
                    **GUARDED,
                    "503": problem(FULL, **{"Retry-After": "RetryAfter"}),
                },
            }
        }
    }
