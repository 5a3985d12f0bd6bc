"""Pages of tasks bounded in count and in bytes: ``GET /v1/tasks`` and the dead-letter listing.

A listing walks a newest-first stream of ``(position, task id)`` (one index partition, or several merged
lazily), reads the snapshots a batch at a time as stored documents (payloads never parsed), and ends the page
at ``limit`` items, at ``page_bytes`` of documents, or after ``scan_budget`` entries; the cursor is the position
of the last entry it looked at, so the next page starts right after it: nothing skipped, nothing repeated.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from tqcore.documents import ListedTask
from tqcore.domain.access import Principal
from tqcore.domain.errors import Forbidden, GroupRequired
from tqcore.domain.requests import ScheduleQuery, TaskListQuery
from tqcore.queries import TaskQueries, TaskStamp, encode_cursor, task_after

#: A filtered listing reads at most this many tasks per page: a page may come back short (even empty) with a
#: ``next_cursor`` where the reading stopped, so one request never scans a whole group.
SCAN_BUDGET = 1000
#: Snapshots read per batch at most (DynamoDB's ``BatchGetItem`` takes 100 keys).
READ_BATCH = 100
#: The bytes of documents a page holds at most (``TQ_LIST_PAGE_BYTES``); one larger document still makes a page.
PAGE_BYTES = 4 * 1024 * 1024
#: DynamoDB's largest item: a batch asks for no more keys than the page's remaining budget holds at this size.
ITEM_BYTES_MAX = 400 * 1024


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """A page of a listing (tasks, dead letters, a task's runs or events) and the cursor of the next one (``None``:
    this is the last)."""

    items: list[T]
    next_cursor: str | None
    #: Whether the page ended because it looked at its ``scan_budget`` of entries (a filtered listing passing over
    #: many tasks the filters leave out): reading it again costs that budget again.
    scanned_out: bool = False


#: A page of tasks, as stored documents.
TaskPage = Page[ListedTask]


@dataclass(frozen=True)
class PageRules:
    """How a page ends: ``limit`` items, ``page_bytes`` of documents or ``scan_budget`` entries looked at."""

    limit: int
    page_bytes: int = PAGE_BYTES
    scan_budget: int = SCAN_BUDGET
    #: Whether many entries may be left out (a status or type filter): batches are then not cut to the items
    #: the page still needs.
    filtered: bool = False


def fill_page(
    entries: Iterator[tuple[str, str]],
    read: Callable[[Sequence[str]], list[ListedTask]],
    keep: Callable[[str, ListedTask], bool],
    rules: PageRules,
    kind: str,
) -> TaskPage:
    """Read ``entries`` (newest-first ``(position, id)``) into a page of the tasks ``keep`` accepts.

    A batch asks for no more keys than the rest of the page holds at DynamoDB's largest item, plus one: the page
    and its batch together stay within ``page_bytes`` plus one item, whatever the mix of sizes.
    """
    items: list[ListedTask] = []
    used = scanned = 0
    last: str | None = None  # the position of the last entry looked at: the next page starts after it
    budget = rules.scan_budget
    while len(items) < rules.limit and scanned < budget:
        # Not from the sizes seen so far: any unread task may be a largest item (small ones first, then large,
        # would make one batch hold many times the budget). +1: the document that ends the page.
        fits = max(1, (rules.page_bytes - used) // ITEM_BYTES_MAX + 1)
        wanted = READ_BATCH if rules.filtered else rules.limit - len(items)
        chunk = list(itertools.islice(entries, min(wanted, budget - scanned, fits)))
        if not chunk:
            return TaskPage(items, None)
        scanned += len(chunk)
        found = {task.id: task for task in read([task_id for _, task_id in chunk])}
        for n, (position, task_id) in enumerate(chunk):
            task = found.get(task_id)
            if task is not None and keep(position, task):
                if items and used + len(task.doc) > rules.page_bytes:
                    assert last is not None  # a page with items has looked at an entry
                    return TaskPage(items, encode_cursor(kind, last))
                items.append(task)
                used += len(task.doc)
            last = position
            if len(items) == rules.limit:
                more = n < len(chunk) - 1 or next(entries, None) is not None
                return TaskPage(items, encode_cursor(kind, last) if more else None)
    more = next(entries, None) is not None
    cursor = encode_cursor(kind, last) if more and last is not None else None
    return TaskPage(items, cursor, scanned_out=cursor is not None and scanned >= budget)


def listed_groups(
    group: str | None, principal: Principal, what: str, every_group: Callable[[], list[str]] | None
) -> list[str]:
    """The groups a listing covers: the one named (if the caller may see it), else all the caller's groups
    (an admin's: ``every_group()``; ``GroupRequired`` without it)."""
    if group is not None:
        if not principal.can_see(group):
            raise Forbidden(f"{principal.name} may not read group {group!r}", group=group)
        return [group]
    if principal.admin:
        if every_group is None:
            raise GroupRequired(f"name a group: an admin's {what} would span every group")
        return every_group()
    return sorted(principal.groups)


def matches(query: TaskListQuery, task: ListedTask) -> bool:
    """Whether a task passes the listing's filters (status, type, name)."""
    return (
        (query.status is None or task.status is query.status)
        and (query.type is None or task.type == query.type)
        and query.matches_name(task.name)
    )


def is_filtered(query: TaskListQuery) -> bool:
    """Whether the listing filters (so a page may be short, and read more tasks than it holds)."""
    return query.status is not None or query.type is not None or query.name is not None


@dataclass(frozen=True)
class Arrivals:
    """What :meth:`TaskListing.arrivals` found: the newest task id now, and whether a new task passes the filters."""

    newest: str | None
    matching: bool


class TaskListing:
    """``GET /v1/tasks``: a group's tasks (or all the caller's groups merged), newest first, filtered."""

    def __init__(
        self,
        queries: TaskQueries,
        *,
        every_group: Callable[[], list[str]] | None = None,
        scan_budget: int = SCAN_BUDGET,
        page_bytes: int = PAGE_BYTES,
    ) -> None:
        self._queries = queries
        self._every_group = every_group
        self._budget = scan_budget
        self._page_bytes = page_bytes

    def page(self, query: TaskListQuery, principal: Principal) -> TaskPage:
        """A page of tasks matching the filters; reads at most ``scan_budget`` tasks (see ``SCAN_BUDGET``)."""
        before = None if query.cursor is None else task_after(query.cursor)
        groups = listed_groups(query.group, principal, "tasks", self._every_group)
        # Task ids sort by creation time in every group alike, so merging the groups' newest-first id streams
        # gives the newest-first order of their union, and a cursor (an id) is a position valid in each.
        ids = heapq.merge(*(self._queries.newest_ids(group, before) for group in groups), reverse=True)

        def keep(_: str, task: ListedTask) -> bool:
            return matches(query, task)

        filtered = is_filtered(query)
        rules = PageRules(
            query.limit, self._page_bytes, self._budget if filtered else max(self._budget, query.limit), filtered
        )
        return fill_page(((task_id, task_id) for task_id in ids), self._queries.listed, keep, rules, "tasks")

    def newest_id(self, query: TaskListQuery, principal: Principal) -> str | None:
        """The id of the newest task of the groups ``query`` lists (its filters and cursor aside), if any: a cheap
        look for new arrivals (the first page of each group's keys-only index, no task read)."""
        groups = listed_groups(query.group, principal, "tasks", self._every_group)
        return max(
            (newest for group in groups if (newest := next(self._queries.newest_ids(group), None))), default=None
        )

    def arrivals(
        self, query: TaskListQuery, principal: Principal, since: str | None, cap: int = READ_BATCH
    ) -> Arrivals:
        """The tasks of the groups ``query`` lists created after the task ``since`` (``None``: none was seen): their
        newest id, and whether one passes the query's filters (its cursor aside). Reads each group's newest ids down
        to ``since`` (keys-only) and, for a filtered query, the snapshots of the new ones; more than ``cap`` new
        tasks count as matching without a read."""
        fresh: list[str] = []
        for group in listed_groups(query.group, principal, "tasks", self._every_group):
            for task_id in self._queries.newest_ids(group):
                if since is not None and task_id <= since:
                    break
                fresh.append(task_id)
                if len(fresh) > cap:
                    return Arrivals(max(fresh), matching=True)
        if not fresh:
            return Arrivals(since, matching=False)
        if not is_filtered(query):
            return Arrivals(max(fresh), matching=True)
        return Arrivals(max(fresh), matching=any(matches(query, task) for task in self._queries.listed(fresh)))

    def stamps(self, ids: Sequence[str]) -> dict[str, TaskStamp]:
        """The stamps of tasks a page of this listing showed (read in bulk, eventually consistent): whether any of
        them moved since."""
        return self._queries.stamps(ids)


class ScheduleListing:
    """``GET /v1/schedules``: a group's schedules (or all the caller's groups merged), newest first: its repeating
    tasks until they end (paused ones too) and its one-off ``at`` tasks until their time.

    Served by the sparse keys-only ``sched`` index, which holds those tasks only: a page reads the schedules it
    shows (plus, with a ``type`` filter, the others it passes over), never the group's other tasks.
    """

    def __init__(
        self,
        queries: TaskQueries,
        *,
        every_group: Callable[[], list[str]] | None = None,
        page_bytes: int = PAGE_BYTES,
    ) -> None:
        self._queries = queries
        self._every_group = every_group
        self._page_bytes = page_bytes

    def page(self, query: ScheduleQuery, principal: Principal) -> TaskPage:
        """A page of schedules of the type asked (any if none); ``InvalidCursor`` for a cursor not from here."""
        before = None if query.cursor is None else task_after(query.cursor, "schedules")
        groups = listed_groups(query.group, principal, "schedules", self._every_group)
        ids = heapq.merge(*(self._queries.scheduled_ids(group, before) for group in groups), reverse=True)

        def keep(_: str, task: ListedTask) -> bool:
            # The index may lag the snapshot by a moment: a schedule that has just ended is not listed.
            return not task.status.is_terminal and (query.type is None or task.type == query.type)

        rules = PageRules(query.limit, self._page_bytes, filtered=query.type is not None)
        return fill_page(((task_id, task_id) for task_id in ids), self._queries.listed, keep, rules, "schedules")
