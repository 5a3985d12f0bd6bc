"""``/ui/tasks``: the caller's tasks, newest first, filtered and paged like ``GET /v1/tasks``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import falcon
import msgspec

from tq_gateway.console.live import table_filters, table_live_url, table_query
from tq_gateway.console.render import Renderer
from tqcore.domain.access import Principal
from tqcore.domain.model import Status
from tqcore.listing import TaskListing
from tqcore.usecases.service import Catalog


class Row(msgspec.Struct):
    """What a row of the table shows of a listed task (decoded from its stored document; the payload and result
    are skipped, never built into Python objects)."""

    id: str
    type: str
    group: str
    name: str | None
    status: str
    priority: str
    attempts: int
    created_at: str
    updated_at: str | None
    cancel_requested: bool = False


ROW = msgspec.json.Decoder(Row)


def visible_groups(principal: Principal, catalog: Catalog) -> list[str]:
    """The groups the filter offers: the caller's own, or (an admin) every group tasks were submitted to."""
    return catalog.groups() if principal.admin else sorted(principal.groups)


class TaskTable:
    """``GET /ui/tasks``: a page of the caller's tasks (``TaskListing``, as ``GET /v1/tasks``), newest first."""

    def __init__(self, renderer: Renderer, listing: TaskListing, catalog: Catalog) -> None:
        self._renderer = renderer
        self._listing = listing
        self._catalog = catalog

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        filters = table_filters(req)
        cursor = req.get_param("cursor") or None
        query = table_query(req)
        page = self._listing.page(query, req.context.principal)
        rows = [ROW.decode(item.doc) for item in page.items]
        self._renderer.render(
            req,
            resp,
            "tasks.html",
            rows=rows,
            filters=filters,
            groups=visible_groups(req.context.principal, self._catalog),
            statuses=[status.value for status in Status],
            paged=bool(cursor),
            next_url=_page_url(filters, page.next_cursor) if page.next_cursor else "",
            newest_url=_page_url(filters, None),
            live_url=table_live_url(query, page),
        )


def _query_string(filters: dict[str, str], cursor: str | None) -> str:
    params: dict[str, Any] = dict(filters)
    if cursor:
        params["cursor"] = cursor
    return "?" + urlencode(params) if params else ""


def _page_url(filters: dict[str, str], cursor: str | None) -> str:
    return "/ui/tasks" + _query_string(filters, cursor)
