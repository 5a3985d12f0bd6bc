"""The OpenAPI description of pausing and resuming a repeating task (contract section 8)."""

from __future__ import annotations

from typing import Any

from tq_gateway.openapi_components import GUARDED, NOT_FOUND, ok, problem, ref


def paths() -> dict[str, Any]:
    """``/v1/tasks/{task_id}/pause`` and ``/v1/tasks/{task_id}/resume``."""
    return {
        "/v1/tasks/{task_id}/pause": _operation(
            "pauseTask",
            "Pause a repeating task: it starts no attempt until resumed (no body)",
            "The task is `paused` at once, and an attempt waiting to start (a queued run, a retry) never starts: a "
            "run not started gives its slot back. An attempt running finishes first (its outcome is recorded, no "
            "retry follows): until it ends the task stays `running` with `paused_at` set, then it is `paused`. "
            "Pausing a paused task changes nothing.",
            ok("the task, `paused` (or `running` with `paused_at` set, while an attempt runs)", "Task", ETag="ETag"),
            "the task does not repeat, has ended, or is being cancelled",
        ),
        "/v1/tasks/{task_id}/resume": _operation(
            "resumeTask",
            "Resume a paused task with its next slot (no body)",
            "The task waits for its first slot after now (`scheduled`); the slots that passed while it was paused "
            'are recorded as one `run_skipped` event with `"reason": "paused"`, their `count`, `first` and `last`. '
            "A task whose schedule ended meanwhile ends `expired`.",
            ok("the task, `scheduled` (or `running`, the attempt running when it was paused)", "Task", ETag="ETag"),
            "the task is not paused",
        ),
    }


def _operation(operation_id: str, summary: str, description: str, done: Any, conflict: str) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation_id,
            "tags": ["tasks"],
            "summary": summary,
            "description": description,
            "parameters": [ref("TaskId", "parameters")],
            "responses": {
                "200": done,
                **NOT_FOUND,
                "409": problem(conflict),
                "411": ref("LengthRequired", "responses"),
                "413": ref("BodyTooLarge", "responses"),
                **GUARDED,
            },
        }
    }
