"""``/ui/dlq``: the caller's dead letters, and redriving them (one, the selected, or all matching) with a dry run
first.

The page reads ``DeadLetters.page`` (``GET /v1/dlq``); every redrive is ``DeadLetters.redrive``
(``POST /v1/dlq/redrive``) as the signed-in user: first with ``dry_run`` (the confirmation page says how many tasks
it would redrive), then, confirmed, for exactly the tasks the dry run named (those still failed by then).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import falcon

from tq_gateway.console.filters import Filters, fields, list_page
from tq_gateway.console.render import Renderer, when
from tqcore.documents import ListedTask
from tqcore.domain.access import Principal
from tqcore.domain.requests import DeadLetterQuery, RedriveDeadLetters
from tqcore.listing import TaskPage
from tqcore.usecases.management import DeadLetters
from tqcore.usecases.service import Catalog

PATH = "/ui/dlq"
#: What a Redrive with no row ticked (all matching of one group) redrives at most at once (the API's largest ``limit``).
REDRIVE_ALL_MAX = 1000
#: Ids the confirmation page names (it counts them all).
NAMED_MAX = 20
#: A dead letter's error message as a row shows it, at most.
MESSAGE_CHARS = 200


@dataclass(frozen=True)
class DeadLetterRow:
    """One row of the dead-letter table."""

    id: str
    group: str
    type: str
    name: str | None
    failed_at: str
    attempts: int
    error: str

    @property
    def pick(self) -> str:
        """The value its checkbox and its Redrive button send: ``<group>:<id>`` (ids hold no ``:``)."""
        return f"{self.group}:{self.id}"


def dead_letter_row(task: ListedTask) -> DeadLetterRow:
    """The row of one listed dead letter."""
    f = fields(task, ("id", "group", "type", "name", "finished_at", "attempts", "last_error"))
    error = f["last_error"] or {}
    message = str(error.get("message") or "")
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return DeadLetterRow(
        id=f["id"],
        group=f["group"],
        type=f["type"],
        name=f["name"],
        failed_at=when(f["finished_at"]),
        attempts=int(f["attempts"] or 0),
        error=f"{error['type']}: {message}" if error.get("type") else message,
    )


def count_words(count: int) -> str:
    """``1 task``, ``2 tasks``: how the pages say how many."""
    return f"{count} task" if count == 1 else f"{count} tasks"


def _sole_group(filters: Filters, principal: Principal) -> str | None:
    """The group "all matching" means: the one filtered by, or a non-admin's only group."""
    if filters.group is not None:
        return filters.group
    if not principal.admin and len(principal.groups) == 1:
        return next(iter(principal.groups))
    return None


class DeadLetterList:
    """``GET /ui/dlq``: a page of the caller's dead letters, filtered by group and type, 50 a page."""

    def __init__(self, renderer: Renderer, dead_letters: DeadLetters, catalog: Catalog) -> None:
        self._renderer = renderer
        self._dead_letters = dead_letters
        self._catalog = catalog

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal

        def read(filters: Filters) -> TaskPage:
            return self._dead_letters.page(DeadLetterQuery.model_validate(filters.query()), principal)

        redriven = req.get_param("redriven") or ""
        list_page(
            self._renderer,
            req,
            resp,
            "dlq.html",
            self._catalog,
            read,
            dead_letter_row,
            all_group=_sole_group(Filters.read(req.get_param), principal),
            redriven=count_words(int(redriven)) if redriven.isdigit() and len(redriven) <= 7 else "",
        )


class DeadLetterRedrive:
    """``POST /ui/dlq/redrive``: a dry run of the redrive asked for (the ``pick``ed rows; with none picked, the
    newest ``REDRIVE_ALL_MAX`` matching the filters when they name one group, else the page's rows), answered with
    a confirmation page; with
    ``confirm``, the redrive of the tasks that page named, then back to the list with how many were redriven."""

    def __init__(self, renderer: Renderer, dead_letters: DeadLetters) -> None:
        self._renderer = renderer
        self._dead_letters = dead_letters

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        form = req.context.form
        filters = Filters.read(form.get)
        picks = form.getall("pick")
        if form.get("confirm") == "yes":
            count = len(self._redrive(picks, filters, principal, dry_run=False))
            raise falcon.HTTPSeeOther(filters.url(PATH, redriven=count))
        capped = False
        group = _sole_group(filters, principal)
        if not picks and group is not None:
            cmd = RedriveDeadLetters(group=group, type=filters.type, limit=REDRIVE_ALL_MAX, dry_run=True)
            picks = [f"{group}:{task_id}" for task_id in self._dead_letters.redrive(cmd, principal).ids]
            capped = len(picks) == REDRIVE_ALL_MAX
        else:
            picks = self._redrive(picks or form.getall("page_pick"), filters, principal, dry_run=True)
        self._renderer.render(
            req,
            resp,
            "dlq_confirm.html",
            filters=filters,
            picks=picks,
            named=[pick.rpartition(":")[2] for pick in picks[:NAMED_MAX]],
            count=count_words(len(picks)),
            capped=capped,
            back_url=filters.url(PATH),
        )

    def _redrive(self, picks: list[str], filters: Filters, principal: Principal, *, dry_run: bool) -> list[str]:
        """Redrive (or, on a dry run, name) the picked tasks that are still failed, a group at a time (each
        ``POST /v1/dlq/redrive`` is about one group); the picks it redrove."""
        by_group: dict[str, list[str]] = defaultdict(list)
        for pick in dict.fromkeys(picks):
            group, sep, task_id = pick.rpartition(":")
            if sep and group and task_id:
                by_group[group].append(task_id)
        done: list[str] = []
        for group, ids in sorted(by_group.items()):
            for offset in range(0, len(ids), REDRIVE_ALL_MAX):
                cmd = RedriveDeadLetters(
                    group=group, ids=ids[offset : offset + REDRIVE_ALL_MAX], type=filters.type, dry_run=dry_run
                )
                done += [f"{group}:{task_id}" for task_id in self._dead_letters.redrive(cmd, principal).ids]
        return done
