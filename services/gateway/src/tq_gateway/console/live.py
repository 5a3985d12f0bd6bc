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
  ``console_table_relist_s`` (60 s), for older tasks that entered its filter (a task turning ``failed`` under
  ``status=failed``), unless its last read stopped at the listing's scan budget (a filter few tasks pass: reading
  1,000 tasks again would find the same short page; its own rows and arrivals are still followed). An admin's table
  of every group looks at its rows only (no arrivals look, which would be a query per group of the system): a new
  task shows when a row moves or on reload; filtering a group brings the arrivals look back.
  So a quiet table costs a stamps read and a keys-only query per listed group per look; a filtered one also a page
  read (up to the scan budget: 1,000 tasks, ~10 queries and ~91 batch reads of at most 11 keys) per
  ``console_table_relist_s``; and a table whose rows keep moving at most one page view's reads per look.

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
from collections.abc import Callable, Generator
from dataclasses import dataclass
from urllib.parse import urlencode

import falcon
import msgspec

from tq_gateway.console.gate import Access
from tq_gateway.streams import HeldStream, Pacer, StreamTiming, TaskFollower, frame, retry_line, send_stream
from tq_gateway.waiting import Slots, stamp
from tq_gateway.watch import TaskWatch
from tqcore.documents import FIELDS, ListedTask
from tqcore.domain.access import Principal
from tqcore.domain.model import Status
from tqcore.domain.requests import TaskListQuery
from tqcore.domain.task import Task
from tqcore.listing import TaskListing, TaskPage, is_filtered
from tqcore.queries import TaskStamp

log = logging.getLogger(__name__)

#: Rows of the tasks table (one page).
TABLE_ROWS = 50
#: The table's filters, as its form names them (the API's names; its live URL repeats them and the cursor).
TABLE_FILTERS = ("group", "status", "type", "name")
#: A stream tells at most one change per this many seconds (the browser then fetches the page once for many moves).
CHANGED_GAP_S = 1.0
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


def moves_by_itself(status: Status) -> bool:
    """Whether a task in ``status`` can still change without a user acting on it: not when it ended (``succeeded``,
    ``cancelled``, ``expired``, and ``failed``, which only a user's redrive moves) nor while it is ``paused`` (only a
    user's resume moves it). Its page then follows nothing: a user who acts on it gets the page again anyway."""
    return not status.is_terminal and status is not Status.PAUSED


def task_live_url(task: Task) -> str:
    """A task page's ``data-live`` URL; empty (no stream) for a task that can no longer move by itself."""
    return f"/ui/tasks/{task.id}/live?seen={task_seen(task)}" if moves_by_itself(task.status) else ""


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
    """``GET /ui/tasks/{task_id}/live``: ``changed`` whenever the task moves (a new version or progress report).
    A task that can no longer move by itself (:func:`moves_by_itself`) is answered ``204 No Content`` (an
    EventSource then stops; ``console.js`` fetches the page once, which shows the task as it ended), and a stream
    ends once it told the task's move into such a state."""

    access = Access.SCRIPTED

    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        task = self._history.visible(task_id, req.context.principal)  # 404 outside the caller's groups
        if not moves_by_itself(task.status):
            resp.status = falcon.HTTP_NO_CONTENT
            return
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
                    if not moves_by_itself(watcher.stamp.status):
                        return  # it will not move by itself again: the page fetched now has no stream
                    if not self._watch.sleep(CHANGED_GAP_S) or pacer.over:  # a busy task: still ends in time
                        return
                    continue
                if not pacer.pause(watcher.wait, lambda: watcher.closed):
                    return
                yield from pacer.keep_alive()


class TableLive:
    """``GET /ui/tasks/live?group=&status=&type=&name=&cursor=&seen=``: ``changed`` whenever the table page with
    these filters would differ (see the module's docstring for how it looks, and what that costs)."""

    access = Access.SCRIPTED

    def __init__(
        self,
        listing: TaskListing,
        watch: TaskWatch,
        slots: Slots,
        timing: StreamTiming,
        check_s: float,
        relist_s: float,
    ) -> None:
        self._listing = listing
        self._watch = watch
        self._slots = slots
        self._timing = timing
        self._check_s = check_s
        self._relist_s = relist_s

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        principal = req.context.principal
        query = table_query(req)
        shown = seen_param(req, _TABLE_SEEN)
        # Reads the page: a group not the caller's is refused here, before any stream.
        look = TableLook(self._listing, query, principal, self._relist_s)
        slot = self._slots.take("stream", principal.name)
        send_stream(resp, HeldStream(self._changes(look, shown or look.seen), slot))

    def _changes(self, look: TableLook, shown: str) -> Generator[bytes]:
        yield retry_line(self._timing)
        pacer = Pacer(self._timing)
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
                look.again()


class TableLook:
    """What a table's stream knows of its page: the rows on screen, the newest task of its groups, and the page's
    seen token; :meth:`again` looks whether any moved and, if so, reads the page again (a filtered page also every
    ``relist_s``, unless its last read stopped at the scan budget)."""

    def __init__(
        self,
        listing: TaskListing,
        query: TaskListQuery,
        principal: Principal,
        relist_s: float,
        ticks: Callable[[], float] = time.monotonic,
    ) -> None:
        self._listing = listing
        self._query = query
        self._principal = principal
        self._relist_s = relist_s
        self._ticks = ticks
        self._filtered = is_filtered(query)
        # A later page starts below a fixed id: new tasks never reach it. An admin's table of every group does not
        # look for them either (a query per group of the system per look): its rows only.
        self._arrivals = query.cursor is None and (query.group is not None or not principal.admin)
        self._relist = False  # whether reading the page again may find older tasks that entered its filter
        self.read_at = 0.0
        self.looked_at = 0.0
        self.rows: list[Row] = []
        self.newest: str | None = None
        self.seen = ""
        if self._arrivals:  # before the page: a task arriving in between is then seen at the next look
            self.newest = listing.newest_id(query, principal)
        self._read()  # not caught: the request is refused (a group not the caller's, an outage) before any stream

    def again(self) -> None:
        """Look whether the page may differ (a row moved, a task arrived) and read it again if so, or if it is due
        to be read again (see :meth:`relist_due`). An outage is logged and the next look tries again."""
        try:
            self.looked_at = self._ticks()
            if self.relist_due() or self._moved():
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

    def relist_due(self) -> bool:
        """Whether the page is to be read again though nothing on screen moved: a filtered page, ``relist_s`` after
        its last read, if that read did not stop at the scan budget."""
        return self._relist and self._ticks() - self.read_at >= self._relist_s

    def _read(self) -> None:
        self.looked_at = self.read_at = self._ticks()
        page = self._listing.page(self._query, self._principal)
        self.rows = [Row.of(item) for item in page.items]
        self.seen = table_seen(page)
        self._relist = self._filtered and not page.scanned_out
