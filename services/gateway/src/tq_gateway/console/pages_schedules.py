"""``/ui/schedules``: the caller's repeating tasks (and one-off ``at`` tasks not yet run), with Pause and Resume.

The page reads ``ScheduleListing`` (``GET /v1/schedules``: the sparse ``sched`` index, then the page's snapshots),
and its buttons are the task page's actions (``POST /ui/tasks/{id}/pause|resume``, with ``back`` naming this page and
its filters): ``Tasks.pause`` / ``Tasks.resume`` as ``POST /v1/tasks/{id}/pause|resume`` call them, as the
signed-in user: the same access checks (a task outside the user's groups is a 404 page), the same events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon

from tq_gateway.console.filters import Filters, fields, list_page
from tq_gateway.console.render import Renderer, when
from tqcore.documents import ListedTask
from tqcore.domain.model import Status
from tqcore.domain.requests import ScheduleQuery
from tqcore.listing import ScheduleListing, TaskPage
from tqcore.usecases.service import Catalog

#: The document fields a row shows.
_ROW_FIELDS = (
    "id",
    "group",
    "type",
    "name",
    "status",
    "schedule",
    "next_run_at",
    "next_slot_at",
    "paused_at",
    "cancel_requested",
    "run_count",
    "run_slot",
    "last_error",
)


@dataclass(frozen=True)
class ScheduleRow:
    """One row of the schedules table, as the page shows it."""

    id: str
    group: str
    type: str
    name: str | None
    schedule: str
    status: str
    #: Paused while a run is under way: the task is ``paused`` once that run ends.
    pausing: bool
    next_run: str
    last_run: str
    can_pause: bool
    can_resume: bool


def schedule_words(schedule: dict[str, Any]) -> str:
    """A schedule as people read it: ``every 60 s``, ``cron 0 * * * * (Europe/Paris)``, ``once at …``, with its
    window (``from``/``until``) if it has one."""
    if schedule.get("every_s") is not None:
        every = float(schedule["every_s"])
        words = f"every {every:g} s"
    elif schedule.get("cron") is not None:
        words = f"cron {schedule['cron']} ({schedule.get('timezone') or 'UTC'})"
    else:
        return f"once at {when(schedule.get('at'))}"
    if schedule.get("start_at"):
        words += f", from {when(schedule['start_at'])}"
    if schedule.get("end_at"):
        words += f", until {when(schedule['end_at'])}"
    return words


def schedule_row(task: ListedTask) -> ScheduleRow:
    """The row of one listed schedule."""
    f = fields(task, _ROW_FIELDS)
    status = Status(f["status"])
    schedule = f["schedule"] or {}
    repeating = schedule.get("every_s") is not None or schedule.get("cron") is not None
    paused = f["paused_at"] is not None
    if paused:
        next_run = "none while paused"
    elif status in (Status.SCHEDULED, Status.RETRYING):
        next_run = when(f["next_run_at"])
    else:  # a run is queued or under way: the slot after it
        next_run = when(f["next_slot_at"]) or "none"
    return ScheduleRow(
        id=f["id"],
        group=f["group"],
        type=f["type"],
        name=f["name"],
        schedule=schedule_words(schedule),
        status=status.value,
        pausing=paused and status is not Status.PAUSED,
        next_run=next_run,
        last_run=_last_run(status, f),
        can_pause=repeating and not paused and not f["cancel_requested"],
        can_resume=paused,
    )


def _last_run(status: Status, f: dict[str, Any]) -> str:
    """The last finished run's outcome, from the snapshot alone (no history read per row): a run that succeeds
    clears ``last_error``, one that fails for good leaves it."""
    if not f["run_count"]:
        return "running now (first run)" if status is Status.RUNNING else "none yet"
    slot = f" (slot {when(f['run_slot'])})" if f["run_slot"] and status not in (Status.RUNNING, Status.QUEUED) else ""
    error = f["last_error"]
    if error is None:
        return f"succeeded{slot}"
    return f"failed: {error['type']}{slot}"


class Schedules:
    """``GET /ui/schedules``: a page of the caller's schedules, filtered by group and type, 50 a page."""

    def __init__(self, renderer: Renderer, schedules: ScheduleListing, catalog: Catalog) -> None:
        self._renderer = renderer
        self._schedules = schedules
        self._catalog = catalog

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        def read(filters: Filters) -> TaskPage:
            return self._schedules.page(ScheduleQuery.model_validate(filters.query()), req.context.principal)

        list_page(self._renderer, req, resp, "schedules.html", self._catalog, read, schedule_row)
