"""The console's live parts: Server-Sent Events that tell an open page when it would differ, so ``console.js``
fetches it again and swaps its ``<main>``.

- ``GET /ui/tasks/{id}/live``: the task page. The worker's :class:`~tq_gateway.watch.TaskWatch` follows the task
  (its version, status and progress), as for ``/v1/tasks/{id}/stream``: what an open task page costs is its share of
  the watch's bulk reads (one ``BatchGetItem`` per 100 watched tasks a watch interval, shared by every stream and wait
  of the worker).
- ``GET /ui/tasks/live?<the table's filters>``: the tasks table. Every ``console_table_check_s`` it reads the stamps of
  the rows on screen (one ``BatchGetItem`` of at most 50 keys, eventually consistent) and, on a first page, each
  listed group's ids newer than the newest it knows (one keys-only ``Query`` each; on a filtered page, the new tasks'
  snapshots too, to see whether they pass the filters). Only when a row moved or a matching task arrived does it read
  the page again (the listing the page itself runs) and compare. A filtered page is also read again every
  ``RELIST_EVERY``-th look, for older tasks that entered its filter (a task turning ``failed`` under
  ``status=failed``). So an open table costs at most one page view's reads per look, and a quiet one a stamps read
  and a query per group.

Each message is ``event: changed`` with ``id`` and ``data`` the page's new *seen* token: the task's
``<version>.<progress ms>``, or a digest of the table's rows (id, status, version). A page carries the token it
was rendered with in its ``data-live`` URL (``?seen=``), so a change between the page's render and the stream's
start is told at once, and a client that reconnects (the stream ends after ``TQ_STREAM_MAX_S``) says what it shows.
A stream holds one of the worker's stream slots (503 when none is free, before any header), sends pings while
silent, and tells at most one change a second (``CHANGED_GAP_S``): a task reporting progress many times a second
does not make the browser fetch its page as often.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Generator
from dataclasses import dataclass
from urllib.parse import urlencode

import falcon
import msgspec

from tq_gateway.streams import HeldStream, Pacer, StreamTiming, TaskFollower, frame, retry_line, send_stream
from tq_gateway.waiting import Slots, stamp
from tq_gateway.watch import TaskWatch
from tqcore.documents import FIELDS, ListedTask
from tqcore.domain.access import Principal
from tqcore.domain.requests import TaskListQuery
from tqcore.domain.task import Task
from tqcore.listing import TaskListing, TaskPage
from tqcore.queries import TaskStamp

log = logging.getLogger(__name__)

#: Rows of the tasks table (one page).
TABLE_ROWS = 50
#: The table's filters, as its form names them (the API's names; its live URL repeats them and the cursor).
TABLE_FILTERS = ("group", "status", "type", "name")
#: A stream tells at most one change per this many seconds (the browser then fetches the page once for many moves).
CHANGED_GAP_S = 1.0
#: A filtered table is read again every this many looks even when nothing on screen moved.
RELIST_EVERY = 5
#: A task page's seen token: ``<version>.<ms of its latest progress report, 0 without>``.
_TASK_SEEN = re.compile(r"([0-9]{1,18})\.([0-9]{1,15})", re.ASCII)
#: A table's seen token: the first 16 hex digits of its rows' digest.
_TABLE_SEEN = re.compile(r"[0-9a-f]{16}", re.ASCII)


# ------------------------------------------------------------------------------------------------- seen tokens
def task_mark(now: TaskStamp) -> tuple[int, int]:
    """What a task page shows of a task, as a comparable pair: version, then its latest progress report's time."""
    return now.version, 0 if now.progress is None else int(now.progress.at.timestamp() * 1000)


def task_seen(task: Task) -> str:
    """The seen token of a task page showing ``task``."""
    return "{}.{}".format(*task_mark(stamp(task)))


def task_live_url(task: Task) -> str:
    """A task page's ``data-live`` URL."""
    return f"/ui/tasks/{task.id}/live?seen={task_seen(task)}"


@dataclass(frozen=True)
class Row:
    """What the table's live check compares of a row: the rest of a row (type, name, times) never changes without
    the task's version moving."""

    id: str
    status: str
    version: int

    @classmethod
    def of(cls, item: ListedTask) -> Row:
        return cls(item.id, item.status.value, msgspec.json.decode(FIELDS.decode(item.doc)["version"], type=int))

    def moved(self, now: TaskStamp | None) -> bool:
        """Whether the task moved past this row (or is gone); a lagging read is not a move."""
        return now is None or now.version > self.version


def table_seen(page: TaskPage) -> str:
    """The seen token of a table showing ``page``: a digest of its rows and whether it has a next page."""
    text = "\n".join(f"{r.id} {r.status} {r.version}" for r in map(Row.of, page.items))
    return hashlib.sha256(f"{text}\n{page.next_cursor is not None}".encode()).hexdigest()[:16]


def table_filters(req: falcon.Request) -> dict[str, str]:
    """The table's filters the request names (a field left empty in the filter form is no filter)."""
    return {name: value for name in TABLE_FILTERS if (value := (req.get_param(name) or "").strip())}


def table_query(req: falcon.Request) -> TaskListQuery:
    """The table's query (its filters, the page's cursor, ``TABLE_ROWS`` rows) from the request's parameters: the
    page and its live stream read the same; a pydantic ``ValidationError`` (422) for values the API would refuse."""
    cursor = req.get_param("cursor") or None
    return TaskListQuery.model_validate({**table_filters(req), "limit": TABLE_ROWS, "cursor": cursor})


def table_live_url(query: TaskListQuery, page: TaskPage) -> str:
    """A table page's ``data-live`` URL: its filters and its seen token."""
    shown = query.model_dump(mode="json", include={*TABLE_FILTERS, "cursor"}, exclude_none=True)
    return f"/ui/tasks/live?{urlencode({**shown, 'seen': table_seen(page)})}"


def changed(seen: str) -> bytes:
    """The message that tells a page it would differ now (``id`` and ``data`` carry the new seen token)."""
    return frame(data={"seen": seen}, event="changed", event_id=seen)


def seen_param(req: falcon.Request, form: re.Pattern[str]) -> str | None:
    """The ``seen`` parameter (``None`` without one); 400 for one that is no token of this page."""
    raw = req.get_param("seen")
    if raw is None or raw == "":
        return None
    if not form.fullmatch(raw):
        raise falcon.HTTPBadRequest(title="Bad Request", description="seen must be a token of this page")
    return raw


# ---------------------------------------------------------------------------------------------------- streams
class TaskLive(TaskFollower):
    """``GET /ui/tasks/{task_id}/live``: ``changed`` whenever the task moves (a new version or progress report)."""

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        task = self._history.visible(task_id, req.context.principal)  # 404 outside the caller's groups
        raw = seen_param(req, _TASK_SEEN)
        shown = task_mark(stamp(task))
        if raw is not None and (match := _TASK_SEEN.fullmatch(raw)):
            shown = int(match[1]), int(match[2])
        slot = self._slots.take("stream", req.context.principal.name)
        send_stream(resp, HeldStream(self._changes(task, shown), slot))

    def _changes(self, task: Task, shown: tuple[int, int]) -> Generator[bytes]:
        yield retry_line(self._timing)
        pacer = Pacer(self._timing)
        with self._watch.watching(task.id, stamp(task)) as watcher:
            while True:
                now = task_mark(watcher.stamp)
                if now > shown:
                    shown = now
                    yield changed("{}.{}".format(*now))
                    pacer.wrote()
                    if not self._watch.sleep(CHANGED_GAP_S) or pacer.over:  # a busy task: still ends in time
                        return
                    continue
                if not pacer.pause(watcher.wait, lambda: watcher.closed):
                    return
                yield from pacer.keep_alive()


class TableLive:
    """``GET /ui/tasks/live?group=&status=&type=&name=&cursor=&seen=``: ``changed`` whenever the table page with
    these filters would differ (see the module's docstring for how it looks, and what that costs)."""

    def __init__(
        self, listing: TaskListing, watch: TaskWatch, slots: Slots, timing: StreamTiming, check_s: float
    ) -> None:
        self._listing = listing
        self._watch = watch
        self._slots = slots
        self._timing = timing
        self._check_s = check_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        query = table_query(req)
        shown = seen_param(req, _TABLE_SEEN)
        look = TableLook(self._listing, query, principal)  # reads the page: a group not yours is refused here
        slot = self._slots.take("stream", principal.name)
        send_stream(resp, HeldStream(self._changes(look, shown or look.seen), slot))

    def _changes(self, look: TableLook, shown: str) -> Generator[bytes]:
        yield retry_line(self._timing)
        pacer = Pacer(self._timing)
        looks = 0
        told_at = 0.0
        while True:
            if look.seen != shown:
                shown = look.seen
                yield changed(shown)
                pacer.wrote()
                told_at = time.monotonic()
            next_at = max(look.looked_at + self._check_s, told_at + CHANGED_GAP_S)
            if not pacer.pause(self._watch.sleep, lambda: self._watch.closed, next_at - time.monotonic()):
                return
            yield from pacer.keep_alive()
            if time.monotonic() >= next_at:
                looks += 1
                look.again(relist=looks % RELIST_EVERY == 0)


class TableLook:
    """What a table's stream knows of its page: the rows on screen, the newest task of its groups, and the page's
    seen token; :meth:`again` looks whether any moved and, if so, reads the page again."""

    def __init__(self, listing: TaskListing, query: TaskListQuery, principal: Principal) -> None:
        self._listing = listing
        self._query = query
        self._principal = principal
        self._filtered = any(v is not None for v in (query.status, query.type, query.name))
        self._arrivals = query.cursor is None  # a later page starts below a fixed id: new tasks never reach it
        self.looked_at = 0.0
        self.rows: list[Row] = []
        self.newest: str | None = None
        self.seen = ""
        if self._arrivals:  # before the page: a task arriving in between is then seen at the next look
            self.newest = listing.newest_id(query, principal)
        self._read()  # not caught: the request is refused (a group not the caller's, an outage) before any stream

    def again(self, *, relist: bool) -> None:
        """Look whether the page may differ (a row moved, a task arrived) and read it again if so, or if
        ``relist`` and the page is filtered. An outage is logged and the next look tries again."""
        try:
            self.looked_at = time.monotonic()
            if (relist and self._filtered) or self._moved():
                self._read()
        except Exception:  # an outage must not end the stream: the next look tries again
            log.warning("the tasks table's live check could not read; trying again", exc_info=True)

    def _moved(self) -> bool:
        if self.rows:
            stamps = self._listing.stamps([row.id for row in self.rows])
            if any(row.moved(stamps.get(row.id)) for row in self.rows):
                return True
        if self._arrivals:
            found = self._listing.arrivals(self._query, self._principal, self.newest)
            self.newest = found.newest  # new tasks that do not pass the filters are not read again
            return found.matching
        return False

    def _read(self) -> None:
        self.looked_at = time.monotonic()
        page = self._listing.page(self._query, self._principal)
        self.rows = [Row.of(item) for item in page.items]
        self.seen = table_seen(page)
