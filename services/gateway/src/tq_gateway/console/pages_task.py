"""``/ui/tasks/{id}``: one task (its state, payload and result, schedule, runs and events), its runs' logs, and
the actions on it. Each reads or acts through the API's use cases with the caller's principal: a task outside
their groups is a 404 page, as in the API."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import falcon

from tq_gateway.console.gate import Access, Form
from tq_gateway.console.live import task_live_url
from tq_gateway.console.pages_session import safe_next
from tq_gateway.console.render import Renderer
from tq_gateway.views import task_view
from tqcore.domain.access import Principal
from tqcore.domain.codec import event_to_dict
from tqcore.domain.commands import UpdateTask
from tqcore.domain.model import Priority, Schedule, Status
from tqcore.domain.requests import PageQuery
from tqcore.domain.runs import run_to_dict
from tqcore.domain.schedules import next_slot
from tqcore.domain.task import Task
from tqcore.usecases.management import TaskHistory
from tqcore.usecases.service import Tasks

#: Runs and events the page shows (the newest); the rest are a link away (runs) or in the API (events).
RUNS_SHOWN = 50
EVENTS_SHOWN = 200
#: Upcoming slots of a repeating task the page lists.
NEXT_RUNS = 5
#: Characters of payload or result the page shows; the API serves the whole value.
VALUE_CHARS = 64 * 1024


def pretty(value: Any) -> str:
    """A JSON value as the page shows it: indented, cut to ``VALUE_CHARS``."""
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    return text if len(text) <= VALUE_CHARS else text[:VALUE_CHARS] + "\n… (cut: the API serves the whole value)"


def schedule_text(schedule: Schedule | None) -> str:
    """``every 30 s``, ``cron 0 * * * * (Europe/Paris)`` or ``at …``, with its window."""
    if schedule is None:
        return "once, now"
    if schedule.at is not None:
        return f"once, at {schedule.at:%Y-%m-%d %H:%M:%SZ}"
    kind = f"every {schedule.every_s:g} s" if schedule.every_s is not None else f"cron {schedule.cron}"
    if schedule.cron is not None:
        kind += f" ({schedule.timezone or 'UTC'})"
    if schedule.start_at is not None:
        kind += f", from {schedule.start_at:%Y-%m-%d %H:%M:%SZ}"
    if schedule.end_at is not None:
        kind += f", until {schedule.end_at:%Y-%m-%d %H:%M:%SZ}"
    return kind


def next_runs(task: Task, count: int = NEXT_RUNS) -> list[datetime]:
    """The repeating task's next ``count`` slots, from its ``next_run_at``."""
    schedule = task.schedule
    slot = task.next_run_at
    if schedule is None or not schedule.is_repeating or slot is None or task.status.is_terminal:
        return []
    slots: list[datetime] = []
    while slot is not None and len(slots) < count:
        slots.append(slot)
        slot = next_slot(schedule, task.created_at, slot)
    return slots


def allowed_actions(task: Task) -> dict[str, bool]:
    """Which action buttons the page shows: the ones the API would accept now."""
    repeating = task.schedule is not None and task.schedule.is_repeating
    pausing = task.paused_at is not None
    ended = task.status.is_terminal
    return {
        "cancel": not ended and not task.cancel_requested,
        "redrive": task.status is Status.FAILED,
        "pause": repeating and not ended and task.status is not Status.PAUSED and not pausing,
        "resume": task.status is Status.PAUSED or pausing,
        "update": not ended,
        "reschedule": repeating and not ended,
    }


class TaskPage:
    """``GET /ui/tasks/{task_id}``."""

    def __init__(self, renderer: Renderer, tasks: Tasks, history: TaskHistory) -> None:
        self._renderer = renderer
        self._tasks = tasks
        self._history = history

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        principal: Principal = req.context.principal
        task = self._tasks.get(task_id, principal)
        runs = self._history.runs(task_id, principal, PageQuery(limit=RUNS_SHOWN, cursor=req.get_param("runs") or None))
        events = self._history.events_after(task, max(0, task.version - EVENTS_SHOWN), EVENTS_SHOWN)
        view = task_view(task)
        self._renderer.render(
            req,
            resp,
            "task.html",
            task=view,
            live_url=task_live_url(task),
            payload=pretty(view["payload"]),
            result=pretty(view["result"]) if view["result"] is not None else "",
            schedule=schedule_text(task.schedule),
            next_runs=next_runs(task),
            runs=[run_to_dict(run) for run in runs.items],
            older_runs=f"/ui/tasks/{task.id}?runs={runs.next_cursor}" if runs.next_cursor else "",
            events=[event_to_dict(event) for event in events],
            events_cut=bool(events) and events[0].seq > 1,
            actions=allowed_actions(task),
            priorities=[priority.value for priority in Priority],
            data_json=lambda data: json.dumps(data, ensure_ascii=False, separators=(", ", ": ")) if data else "",
        )


class RunLog:
    """``GET /ui/tasks/{task_id}/runs/{run_id}/log``: the run's log as plain text (what the ``Log`` control shows);
    a browser never runs it (``text/plain``, ``nosniff``, the CSP)."""

    def __init__(self, history: TaskHistory) -> None:
        self._history = history

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str, run_id: str) -> None:
        resp.data = self._history.run_log(task_id, run_id, req.context.principal)
        resp.content_type = "text/plain; charset=utf-8"


#: What an action does: the request, the task id and the caller, to the ``NOTICES`` key of what happened.
Action = Callable[[falcon.Request, str, Principal], str]


class TaskAction:
    """``POST /ui/tasks/{task_id}/<action>``: one action through the API's use case, then back to the task page
    (or to the console page the form's ``back`` field names, e.g. the schedules) with a notice (``done=``); a
    refusal (409 and the like) is an error page with the reason."""

    access = Access.SIGNED_IN

    def __init__(self, act: Action) -> None:
        self._act = act

    def on_post(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        done = self._act(req, task_id, req.context.principal)
        back = safe_next(req.context.form.get("back")) if req.context.form.get("back") else f"/ui/tasks/{task_id}"
        raise falcon.HTTPSeeOther(f"{back}{'&' if '?' in back else '?'}done={done}")


def acting(use: Callable[[str, Principal], Task], notice: Callable[[Task], str]) -> Action:
    """An action that calls ``use`` (a ``Tasks``/``DeadLetters`` method) and says ``notice(task)`` after."""

    def act(req: falcon.Request, task_id: str, principal: Principal) -> str:
        return notice(use(task_id, principal))

    return act


def cancelled(task: Task) -> str:
    """A running attempt is only told to stop: the notice says so."""
    return "cancel_requested" if task.status is Status.RUNNING else "cancelled"


def paused(task: Task) -> str:
    """A run under way finishes before the task is paused."""
    return "paused" if task.status is Status.PAUSED else "pause_requested"


def update(tasks: Tasks, changes: Callable[[Form], dict[str, Any]]) -> Action:
    """A change (``PATCH``'s use case) of the fields ``changes`` reads from the form, at the version the page showed
    (412 if the task changed meanwhile); what the API would refuse is refused alike (422, 409)."""

    def act(req: falcon.Request, task_id: str, principal: Principal) -> str:
        form: Form = req.context.form
        cmd = UpdateTask.model_validate(changes(form))
        version = (form.get("version") or "").strip()
        if not version.isdigit():  # the page always sends the version it showed: a change is never applied blind
            raise falcon.HTTPUnprocessableEntity(
                title="Unprocessable Content",
                description="version: the version of the task the form showed is required",
            )
        tasks.update(task_id, cmd, principal, if_match=int(version))
        return "updated"

    return act


def priority_change(form: Form) -> dict[str, Any]:
    """``Save priority``: the new priority."""
    return {"priority": form.get("priority")}


#: The schedule form's fields (empty ones are left out: ``every_s`` or ``cron`` says which kind).
SCHEDULE_FIELDS = ("every_s", "cron", "timezone", "start_at", "end_at")


def schedule_change(form: Form) -> dict[str, Any]:
    """``Save schedule``: an interval (``every_s``) or a cron with its zone, keeping the window the form carries."""
    fields = {name: value for name in SCHEDULE_FIELDS if (value := (form.get(name) or "").strip())}
    return {"schedule": fields}


def done(key: str) -> Callable[[Task], str]:
    """The same notice whatever the task is now."""
    return lambda _: key
