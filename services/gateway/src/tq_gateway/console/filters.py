"""What the schedules and dead-letter pages share: their filters (group, type) and cursor from the query string,
the groups a user may pick, a row's fields read from a listed document, and the pager's links."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import falcon

from tq_gateway.console.render import Renderer
from tqcore.documents import FIELDS, ListedTask
from tqcore.domain.access import Principal
from tqcore.listing import Page
from tqcore.usecases.service import Catalog

#: Rows a console page shows at most.
PAGE_ROWS = 50


@dataclass(frozen=True)
class Filters:
    """A list page's ``group`` and ``type`` filters and its ``cursor`` (blank fields of a GET form are no filter)."""

    group: str | None = None
    type: str | None = None
    cursor: str | None = None

    @classmethod
    def read(cls, get: Callable[[str], str | None]) -> Filters:
        """The filters from a query string or a form (``get`` gives a field's value or ``None``)."""
        return cls(*((get(name) or "").strip() or None for name in ("group", "type", "cursor")))

    def query(self) -> dict[str, Any]:
        """What the listing's use case takes (its query model validates it: a bad value is a 422 page)."""
        given = {"group": self.group, "type": self.type, "cursor": self.cursor}
        return {"limit": PAGE_ROWS, **{name: value for name, value in given.items() if value is not None}}

    def url(self, path: str, *, cursor: str | None = None, **extra: str | int) -> str:
        """``path`` with these filters (and ``cursor``, ``extra``) as its query string."""
        params = {"group": self.group, "type": self.type, "cursor": cursor, **extra}
        query = urlencode({name: value for name, value in params.items() if value is not None})
        return f"{path}?{query}" if query else path


def list_page(
    renderer: Renderer,
    req: falcon.Request,
    resp: falcon.Response,
    template: str,
    catalog: Catalog,
    read: Callable[[Filters], Page[ListedTask]],
    row: Callable[[ListedTask], object],
    **ctx: Any,
) -> None:
    """Render a list page: the page ``read`` gives for the request's filters, each task as ``row`` makes it, the
    filter form's groups, the pager's links and ``here`` (this page, for an action's way back)."""
    filters = Filters.read(req.get_param)
    page = read(filters)
    renderer.render(
        req,
        resp,
        template,
        rows=[row(task) for task in page.items],
        filters=filters,
        groups=group_choices(req.context.principal, catalog),
        next_url=None if page.next_cursor is None else filters.url(req.path, cursor=page.next_cursor),
        first_url=filters.url(req.path) if filters.cursor else None,
        here=filters.url(req.path, cursor=filters.cursor),
        **ctx,
    )


def group_choices(principal: Principal, catalog: Catalog) -> list[str]:
    """The groups a user may filter by: theirs (an admin's: every group tasks were submitted into)."""
    return catalog.groups() if principal.admin else sorted(principal.groups)


def fields(task: ListedTask, names: Sequence[str]) -> dict[str, Any]:
    """The named fields of a listed task's document, parsed one by one (the payload and result never are)."""
    raw = FIELDS.decode(task.doc)
    return {name: json.loads(bytes(raw[name])) if name in raw else None for name in names}
