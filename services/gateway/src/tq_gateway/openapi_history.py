"""The OpenAPI description of a task's history (runs, logs, events), the dead letters and the queues."""

from __future__ import annotations

from typing import Any

from tq_gateway.openapi_components import (
    GUARDED,
    NAME,
    NOT_FOUND,
    SHORT_PAGES,
    event_schema,
    ok,
    problem,
    queue_schema,
    ref,
    run_schema,
)
from tqcore.domain.requests import EVENT_PAGE_LIMIT


def parameters() -> dict[str, Any]:
    """Reusable parameters: the task id, the group and the paging query."""
    return {
        "TaskId": {
            "name": "task_id",
            "in": "path",
            "required": True,
            "description": "the task's id; anything that is not a task's id is a 404",
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
        },
        "Group": {
            "name": "group",
            "in": "query",
            "required": False,
            "description": "the group to list; without it, all the caller's groups merged (an admin's: every group)",
            "schema": NAME,
        },
        "Type": {
            "name": "type",
            "in": "query",
            "required": False,
            "description": "only tasks of this type",
            "schema": NAME,
        },
        "Limit": {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "page size; out of range or not an integer: 422",
            "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
        },
        "EventLimit": {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "events per page; out of range or not an integer: 422",
            "schema": {"type": "integer", "minimum": 1, "maximum": EVENT_PAGE_LIMIT, "default": EVENT_PAGE_LIMIT},
        },
        "Cursor": {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "the `next_cursor` of the previous page (opaque, URL-safe base64); a cursor this "
            "listing did not hand out: 400; longer than 1024 characters: 422",
            "schema": {"type": "string", "minLength": 1, "maxLength": 1024, "pattern": "^[A-Za-z0-9_-]+$"},
        },
    }


def schemas() -> dict[str, Any]:
    """Schemas of runs, events, pages, queues and the dead-letter redrive's answer."""
    cursor = {"type": ["string", "null"], "description": "the next page's cursor; null on the last page"}
    return {
        "Run": run_schema(),
        "RunPage": _page(ref("Run"), cursor),
        "Event": event_schema(),
        "EventList": _page(ref("Event"), cursor),
        "TaskPage": _page(ref("Task"), cursor),
        "Redriven": _affected("redriven"),
        "CancelledTasks": _affected("cancelled (a running task: asked to stop)"),
        "Queue": queue_schema(),
        "QueueList": {"type": "object", "required": ["queues"], "properties": {"queues": _items(ref("Queue"))}},
    }


def _affected(done: str) -> dict[str, Any]:
    """The answer of an action on many tasks of a group: which it acted on (a dry run: would act on)."""
    return {
        "type": "object",
        "required": ["count", "ids", "dry_run"],
        "properties": {
            "count": {"type": "integer", "minimum": 0},
            "ids": {
                "type": "array",
                "items": {"type": "string"},
                "description": f"the tasks {done}, or on a dry run those that would be",
            },
            "dry_run": {"type": "boolean"},
        },
    }


def _items(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def _page(item: dict[str, Any], cursor: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items", "next_cursor"],
        "properties": {"items": _items(item), "next_cursor": cursor},
    }


def paths() -> dict[str, Any]:
    """The endpoints of a task's history, of the dead letters and of the queues."""
    task_id = [ref("TaskId", "parameters")]
    run_id = {
        "name": "run_id",
        "in": "path",
        "required": True,
        "description": "a run's `run_id` as the task's runs list it (`<run>.<attempt>`); anything else is a 404",
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    }
    return {
        "/v1/tasks/{task_id}/runs": {
            "get": {
                "operationId": "listRuns",
                "tags": ["runs"],
                "summary": "A task's runs, newest first: one item per attempt (a projection of its events)",
                "description": "Each page reads only as much of the task's history as its runs need.",
                "parameters": [*task_id, ref("Limit", "parameters"), ref("Cursor", "parameters")],
                "responses": {
                    "200": ok("a page of runs", "RunPage"),
                    "400": problem("a cursor this listing did not hand out"),
                    **NOT_FOUND,
                    "422": problem("an invalid query parameter (errors: [{loc, msg}])"),
                    **GUARDED,
                },
            }
        },
        "/v1/tasks/{task_id}/runs/{run_id}/log": {
            "get": {
                "operationId": "getRunLog",
                "tags": ["runs"],
                "summary": "An attempt's captured output and log lines",
                "parameters": [*task_id, run_id],
                "responses": {
                    "200": {
                        "description": "the log (possibly empty)",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "404": problem(
                        "no such task (or not in the caller's groups), no such run, or a run that recorded no log "
                        "(still running, or lost)"
                    ),
                    "410": problem("the log has expired (see the run's `log_expires_at`)"),
                    **GUARDED,
                },
            }
        },
        "/v1/tasks/{task_id}/events": {
            "get": {
                "operationId": "listEvents",
                "tags": ["tasks"],
                "summary": "A task's event history, oldest first, a page at a time",
                "description": "Follow `next_cursor` until it is null: each page reads only its own events.",
                "parameters": [*task_id, ref("EventLimit", "parameters"), ref("Cursor", "parameters")],
                "responses": {
                    "200": ok("a page of events", "EventList"),
                    "400": problem("a cursor this listing did not hand out"),
                    **NOT_FOUND,
                    "422": problem("an invalid query parameter (errors: [{loc, msg}])"),
                    **GUARDED,
                },
            }
        },
        "/v1/tasks/{task_id}/redrive": {
            "post": {
                "operationId": "redriveTask",
                "tags": ["dead letters"],
                "summary": "Queue a failed task again with a fresh retry budget (no body)",
                "parameters": task_id,
                "responses": {
                    "200": ok("the task, queued", "Task", ETag="ETag"),
                    **NOT_FOUND,
                    "409": problem("the task is not failed"),
                    "411": ref("LengthRequired", "responses"),
                    "413": ref("BodyTooLarge", "responses"),
                    **GUARDED,
                },
            }
        },
        "/v1/dlq": {"get": _dlq_list()},
        "/v1/schedules": {"get": _schedule_list()},
        "/v1/dlq/redrive": {"post": _dlq_redrive()},
        "/v1/tasks:cancel": {"post": _bulk_cancel()},
        "/v1/queues": {
            "get": {
                "operationId": "listQueues",
                "tags": ["queues"],
                "summary": "The task queues with their approximate depths",
                "responses": {"200": ok("every priority's queue", "QueueList"), **GUARDED},
            }
        },
    }


def _dlq_list() -> dict[str, Any]:
    return _filtered_list(
        "listDeadLetters",
        "dead letters",
        "Dead-lettered (failed) tasks, newest first by finished_at",
        "A page of one group's failed tasks (all the caller's groups merged if none is named), of one `type` if named "
        "(an extension of the contract). ",
        "a page of failed tasks",
    )


def _schedule_list() -> dict[str, Any]:
    return _filtered_list(
        "listSchedules",
        "tasks",
        "Schedules: repeating tasks until they end, and one-off `at` tasks until their time, newest first",
        "A page of one group's repeating tasks (`every_s` or `cron`; `paused` ones too) that have not ended, and of "
        "its one-off tasks still waiting for their `at` (all the caller's groups merged if none is named), of one "
        "`type` if named; what the console's schedules page shows (an extension of the contract). Served by an "
        "index that holds only these tasks. ",
        "a page of scheduled tasks",
    )


def _filtered_list(operation_id: str, tag: str, summary: str, description: str, page: str) -> dict[str, Any]:
    """A listing of tasks by ``group`` and ``type``, paged."""
    return {
        "operationId": operation_id,
        "tags": [tag],
        "summary": summary,
        "description": description + SHORT_PAGES,
        "parameters": [
            ref("Group", "parameters"),
            ref("Type", "parameters"),
            ref("Limit", "parameters"),
            ref("Cursor", "parameters"),
        ],
        "responses": {
            "200": ok(page, "TaskPage"),
            "400": problem("a cursor this listing did not hand out"),
            "403": problem("not a member of the group"),
            "422": problem("an invalid query parameter (errors: [{loc, msg}])"),
            **GUARDED,
        },
    }


def _dlq_redrive() -> dict[str, Any]:
    return {
        "operationId": "redriveDeadLetters",
        "tags": ["dead letters"],
        "summary": "Redrive a group's dead letters: the given ids, or else the newest `limit` (of `type` if named)",
        "description": "Ids that are not failed or not in the group are skipped. `type` (an extension of the "
        "contract) narrows `ids` too. With `ids`, `limit` is ignored. "
        "`dry_run` lists what would be redriven and changes nothing.",
        **_group_action("RedriveDeadLetters", ok("what was (or, on a dry run, would be) redriven", "Redriven")),
    }


def _bulk_cancel() -> dict[str, Any]:
    return {
        "operationId": "cancelTasks",
        "tags": ["tasks"],
        "summary": "Cancel a group's tasks: the given ids, or else the newest `limit` matching `status` and `type`",
        "description": "Each task is cancelled as `DELETE /v1/tasks/{id}` cancels it, with the caller as the "
        "actor of its event: a `queued`, `scheduled` or `retrying` task ends `cancelled` at once, a `running` one "
        "is asked to stop (`cancel_requested`). Tasks that already ended, running tasks already asked to stop, and "
        "ids of no task or of another group's task are skipped alike (not counted, not revealed). `status` and "
        "`type` narrow `ids` too; with `ids`, `limit` is ignored. Without `ids` the group's tasks are read newest "
        "first until `limit` match. `dry_run` lists what would be cancelled and changes nothing.",
        **_group_action("CancelTasks", ok("what was (or, on a dry run, would be) cancelled", "CancelledTasks")),
    }


def _group_action(body: str, answer: dict[str, Any]) -> dict[str, Any]:
    """The request body and responses an action on many tasks of a group shares."""
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref(body)}}},
        "responses": {
            "200": answer,
            "400": ref("MalformedBody", "responses"),
            "403": problem("not a member of the group"),
            "411": ref("LengthRequired", "responses"),
            "413": ref("BodyTooLarge", "responses"),
            "422": problem("an invalid body (errors: [{loc, msg}])"),
            **GUARDED,
        },
    }
