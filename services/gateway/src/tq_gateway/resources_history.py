"""Falcon resources of a task's history (runs, events) and of the dead letters: one class per URI template."""

from __future__ import annotations

from typing import Any

import falcon

from tq_gateway.body import json_object
from tqcore.domain.codec import event_to_dict, task_to_dict
from tqcore.domain.requests import DeadLetterQuery, PageQuery, RedriveDeadLetters
from tqcore.domain.runs import run_to_dict
from tqcore.management import DeadLetters, TaskHistory


def _query(req: falcon.Request, *names: str) -> dict[str, Any]:
    """The named query parameters that were given (others are ignored, as for any careful HTTP API)."""
    return {name: req.params[name] for name in names if name in req.params}


class TaskRuns:
    """``/v1/tasks/{task_id}/runs``."""

    def __init__(self, history: TaskHistory) -> None:
        self._history = history

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """A page of the task's runs, newest first."""
        query = PageQuery.model_validate(_query(req, "limit", "cursor"))
        page = self._history.runs(task_id, req.context.principal, query)
        resp.media = {"items": [run_to_dict(run) for run in page.items], "next_cursor": page.next_cursor}


class TaskEvents:
    """``/v1/tasks/{task_id}/events``."""

    def __init__(self, history: TaskHistory) -> None:
        self._history = history

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Every event of the task, oldest first."""
        events = self._history.events(task_id, req.context.principal)
        resp.media = {"items": [event_to_dict(event) for event in events]}


class TaskRedrive:
    """``/v1/tasks/{task_id}/redrive``."""

    def __init__(self, dead_letters: DeadLetters) -> None:
        self._dead_letters = dead_letters

    def on_post(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        """Queue the failed task again with a fresh retry budget."""
        task = self._dead_letters.redrive_task(task_id, req.context.principal)
        resp.media = task_to_dict(task)
        resp.etag = f'"{task.version}"'


class DeadLetterCollection:
    """``/v1/dlq``."""

    def __init__(self, dead_letters: DeadLetters) -> None:
        self._dead_letters = dead_letters

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A page of dead letters, newest first."""
        query = DeadLetterQuery.model_validate(_query(req, "group", "limit", "cursor"))
        page = self._dead_letters.page(query, req.context.principal)
        resp.media = {"items": [task_to_dict(task) for task in page.items], "next_cursor": page.next_cursor}


class DeadLetterRedrive:
    """``/v1/dlq/redrive``."""

    def __init__(self, dead_letters: DeadLetters) -> None:
        self._dead_letters = dead_letters

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Redrive (or, on a dry run, list) a group's dead letters."""
        cmd = RedriveDeadLetters.model_validate(json_object(req))
        outcome = self._dead_letters.redrive(cmd, req.context.principal)
        resp.media = {"count": outcome.count, "ids": outcome.ids, "dry_run": cmd.dry_run}
