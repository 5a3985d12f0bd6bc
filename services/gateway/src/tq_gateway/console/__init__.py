"""The web console (``/ui``): server-rendered pages over the same use cases as the API.

``build_app`` makes one :class:`Console` (its sessions, templates, assets and middleware) and calls
:func:`add_console` with the use cases the API resources get; pages call them with ``req.context.principal``, so
a user sees and does in the console exactly what the API lets them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import falcon

from tq_gateway.auth import BearerAuth
from tq_gateway.console.gate import ConsoleGate
from tq_gateway.console.live import TableLive, TaskLive
from tq_gateway.console.pages_dlq import DeadLetterList, DeadLetterRedrive
from tq_gateway.console.pages_overview import Overview
from tq_gateway.console.pages_schedules import Schedules
from tq_gateway.console.pages_session import SessionEnd, SessionStart, StaticAsset
from tq_gateway.console.pages_task import (
    RunLog,
    TaskAction,
    TaskPage,
    acting,
    cancelled,
    done,
    paused,
    priority_change,
    schedule_change,
    update,
)
from tq_gateway.console.pages_tasks import TaskTable
from tq_gateway.console.render import Assets, Renderer
from tq_gateway.console.session import Sessions
from tq_gateway.settings import GatewaySettings
from tq_gateway.streams import StreamTiming
from tq_gateway.waiting import Slots
from tq_gateway.watch import TaskWatch
from tqcore.listing import ScheduleListing, TaskListing
from tqcore.usecases.management import DeadLetters, TaskHistory
from tqcore.usecases.overview import SystemOverview
from tqcore.usecases.service import Catalog, Tasks


@dataclass(frozen=True)
class UseCases:
    """What the console's pages may call: the API's own use cases and the worker's watch and stream slots."""

    tasks: Tasks
    listing: TaskListing
    history: TaskHistory
    dead_letters: DeadLetters
    catalog: Catalog
    watch: TaskWatch
    slots: Slots
    timing: StreamTiming
    schedules: ScheduleListing
    overview: SystemOverview


class Console:
    """The console's parts of one app: sessions, templates, assets, and the middleware (``gate``) that
    ``build_app`` puts after ``BearerAuth`` and before the rate limit."""

    def __init__(self, settings: GatewaySettings, bearer: BearerAuth) -> None:
        self.settings = settings
        self.bearer = bearer
        self.sessions = Sessions.from_settings(settings)
        self.assets = Assets()
        self.renderer = Renderer(self.assets)
        self.gate = ConsoleGate(self.sessions, bearer, self.renderer, settings.trusted_proxy_hops)


def add_console(app: falcon.App[Any, Any], console: Console, uses: UseCases) -> None:
    """Register every ``/ui`` route (one resource per URI template)."""
    renderer = console.renderer
    app.add_route("/ui", Overview(renderer, uses.overview))
    app.add_route(
        "/ui/session",
        SessionStart(renderer, console.sessions, console.bearer, console.settings.trusted_proxy_hops),
    )
    app.add_route("/ui/session/end", SessionEnd(console.sessions))
    app.add_route("/ui/static/{name}", StaticAsset(console.assets))
    # The tasks table and the task page.
    app.add_route("/ui/tasks", TaskTable(renderer, uses.listing, uses.catalog))
    app.add_route("/ui/tasks/{task_id}", TaskPage(renderer, uses.tasks, uses.history))
    app.add_route("/ui/tasks/{task_id}/runs/{run_id}/log", RunLog(uses.history))
    app.add_route("/ui/tasks/{task_id}/cancel", TaskAction(acting(uses.tasks.cancel, cancelled)))
    app.add_route("/ui/tasks/{task_id}/redrive", TaskAction(acting(uses.dead_letters.redrive_task, done("redriven"))))
    app.add_route("/ui/tasks/{task_id}/update", TaskAction(update(uses.tasks, priority_change)))
    app.add_route("/ui/tasks/{task_id}/schedule", TaskAction(update(uses.tasks, schedule_change)))
    app.add_route("/ui/tasks/{task_id}/pause", TaskAction(acting(uses.tasks.pause, paused)))
    app.add_route("/ui/tasks/{task_id}/resume", TaskAction(acting(uses.tasks.resume, done("resumed"))))
    # Schedules and dead letters (pages_schedules.py, pages_dlq.py); Pause/Resume are the task page's actions.
    app.add_route("/ui/schedules", Schedules(renderer, uses.schedules, uses.catalog))
    app.add_route("/ui/dlq", DeadLetterList(renderer, uses.dead_letters, uses.catalog))
    app.add_route("/ui/dlq/redrive", DeadLetterRedrive(renderer, uses.dead_letters))
    # Live parts (SSE): the tasks table's and the task page's.
    app.add_route(
        "/ui/tasks/live",
        TableLive(
            uses.listing,
            uses.watch,
            uses.slots,
            uses.timing,
            console.settings.console_table_check_s,
            console.settings.console_table_relist_s,
        ),
    )
    app.add_route("/ui/tasks/{task_id}/live", TaskLive(uses.history, uses.watch, uses.slots, uses.timing))
