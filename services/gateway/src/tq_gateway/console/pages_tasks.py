"""``/ui/tasks``: the caller's tasks, newest first, filtered and paged like ``GET /v1/tasks``."""

from __future__ import annotations

import falcon
import msgspec

from tq_gateway.console.filters import Filters, group_choices
from tq_gateway.console.live import table_filters, table_live_url, table_query
from tq_gateway.console.render import Renderer
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
        here = Filters(group=filters.get("group"), type=filters.get("type"))
        others = {name: value for name, value in filters.items() if name not in ("group", "type")}
        page = self._listing.page(query, req.context.principal)
        rows = [ROW.decode(item.doc) for item in page.items]
        self._renderer.render(
            req,
            resp,
            "tasks.html",
            rows=rows,
            filters=filters,
            groups=group_choices(req.context.principal, self._catalog),
            statuses=[status.value for status in Status],
            paged=bool(cursor),
            next_url=here.url(req.path, cursor=page.next_cursor, **others) if page.next_cursor else "",
            newest_url=here.url(req.path, **others),
            live_url=table_live_url(query, page),
        )
