"""Use cases of the read side and the dead letters: a task's runs and events, listing and redriving failures."""

from __future__ import annotations

import heapq
import itertools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from tqcore.clock import SystemClock
from tqcore.domain.access import Principal
from tqcore.domain.codec import ts
from tqcore.domain.errors import (
    Forbidden,
    GroupRequired,
    IllegalTransition,
    InvalidCursor,
    LogExpired,
    QueueUnavailable,
    RunNotFound,
    TaskNotFound,
)
from tqcore.domain.model import Event, RunStatus, Status
from tqcore.domain.requests import DeadLetterQuery, PageQuery, RedriveDeadLetters, TaskListQuery
from tqcore.domain.runs import Run, find_run, page_of_runs, project_runs
from tqcore.domain.task import Task
from tqcore.ports import Clock, RunLogStore, TaskQueue, TaskStore
from tqcore.queries import (
    TaskQueries,
    decode_cursor,
    dlq_after,
    dlq_cursor,
    dlq_position,
    encode_cursor,
    task_after,
)
from tqcore.service import TASK_ID, mutate

log = logging.getLogger(__name__)

_RUNS = "runs"
_SEQ = re.compile(r"[0-9]{1,12}")
#: A filtered listing reads at most this many tasks per page: a page may come back short (even empty) with a
#: ``next_cursor`` where the reading stopped, so one request never scans a whole group.
SCAN_BUDGET = 1000
#: Snapshots read per batch (DynamoDB's ``BatchGetItem`` takes 100 keys).
READ_BATCH = 100


def visible_task(store: TaskStore, task_id: str, principal: Principal) -> Task:
    """The task if the principal may see it; otherwise (and for ids that cannot exist) ``TaskNotFound``."""
    if not TASK_ID.fullmatch(task_id):
        raise TaskNotFound(f"no task {task_id[:64]}")
    task = store.get(task_id)
    if not principal.can_see(task.group):
        raise TaskNotFound(f"no task {task_id}", task_id=task_id)
    return task


@dataclass(frozen=True)
class RunPage:
    """A page of a task's runs, newest first."""

    items: list[Run]
    next_cursor: str | None


@dataclass(frozen=True)
class TaskPage:
    """A page of tasks."""

    items: list[Task]
    next_cursor: str | None


@dataclass(frozen=True)
class Redriven:
    """Which tasks a dead-letter redrive sent back (or, on a dry run, would have)."""

    ids: list[str]

    @property
    def count(self) -> int:
        """How many."""
        return len(self.ids)


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


class TaskListing:
    """``GET /v1/tasks``: a group's tasks (or all the caller's groups merged), newest first, filtered."""

    def __init__(
        self,
        queries: TaskQueries,
        *,
        every_group: Callable[[], list[str]] | None = None,
        scan_budget: int = SCAN_BUDGET,
    ) -> None:
        self._queries = queries
        self._every_group = every_group
        self._budget = scan_budget

    def page(self, query: TaskListQuery, principal: Principal) -> TaskPage:
        """A page of tasks matching the filters; reads at most ``scan_budget`` tasks (see ``SCAN_BUDGET``)."""
        before = None if query.cursor is None else task_after(query.cursor)
        groups = listed_groups(query.group, principal, "tasks", self._every_group)
        # Task ids sort by creation time in every group alike, so merging the groups' newest-first id streams
        # gives the newest-first order of their union, and a cursor (an id) is a position valid in each.
        ids = heapq.merge(*(self._queries.newest_ids(group, before) for group in groups), reverse=True)
        filtered = query.status is not None or query.type is not None
        items: list[Task] = []
        scanned = 0
        last: str | None = None  # the last id read: the next page starts after it
        unread = False  # ids of the last chunk that a full page left unread
        while len(items) < query.limit and scanned < self._budget:
            want = min(READ_BATCH, self._budget - scanned) if filtered else query.limit - len(items)
            chunk = list(itertools.islice(ids, want))
            if not chunk:
                return TaskPage(items, None)
            scanned += len(chunk)
            last = chunk[-1]
            for task in self._queries.tasks(chunk):
                if _matches(task, query):
                    items.append(task)
                    if len(items) == query.limit:
                        unread, last = task.id != chunk[-1], task.id
                        break
        more = unread or next(ids, None) is not None
        return TaskPage(items, encode_cursor("tasks", last) if more and last is not None else None)


def _matches(task: Task, query: TaskListQuery) -> bool:
    return (query.status is None or task.status is query.status) and (query.type is None or task.type == query.type)


class TaskHistory:
    """What happened to a task: its events, its runs projected from them, and each run's log."""

    def __init__(self, store: TaskStore, logs: RunLogStore | None = None, clock: Clock | None = None) -> None:
        self._store = store
        self._logs = logs
        self._clock = clock or SystemClock()

    def events(self, task_id: str, principal: Principal) -> list[Event]:
        """Every event of a task the principal may see, oldest first."""
        visible_task(self._store, task_id, principal)
        return self._store.events(task_id)

    def runs(self, task_id: str, principal: Principal, query: PageQuery) -> RunPage:
        """A page of the task's runs, newest first; raises ``InvalidCursor`` for a cursor not from this listing."""
        before = None if query.cursor is None else _run_position(query.cursor)
        visible_task(self._store, task_id, principal)
        page, next_seq = page_of_runs(project_runs(self._store.events(task_id)), limit=query.limit, before_seq=before)
        return RunPage(page, None if next_seq is None else encode_cursor(_RUNS, str(next_seq)))

    def run_log(self, task_id: str, run_id: str, principal: Principal) -> bytes:
        """One run's captured output (empty if it printed nothing).

        ``RunNotFound`` for an unknown run or one that recorded no log (still running, lost); ``LogExpired``
        past its ``log_expires_at``, or when the object is gone although the run recorded one.
        """
        visible_task(self._store, task_id, principal)
        run = find_run(project_runs(self._store.events(task_id)), run_id)
        if run is None:
            raise RunNotFound(f"task {task_id} has no run {run_id[:64]!r}", task_id=task_id)
        if run.log_size is None or run.log_expires_at is None:
            why = "is still running" if run.status is RunStatus.RUNNING else "recorded no log"
            raise RunNotFound(f"run {run_id} of task {task_id} {why}", task_id=task_id)
        if self._clock.now() >= run.log_expires_at:
            raise LogExpired(f"the log of run {run_id} expired at {ts(run.log_expires_at)}", task_id=task_id)
        if run.log_size == 0:
            return b""
        body = self._logs.get(task_id, run.seq) if self._logs is not None else None
        if body is None:
            raise LogExpired(f"the log of run {run_id} is no longer stored", task_id=task_id)
        return body


def _run_position(cursor: str) -> int:
    position = decode_cursor(_RUNS, cursor)
    if not _SEQ.fullmatch(position):
        raise InvalidCursor()
    return int(position)


class DeadLetters:
    """Failed tasks: listing them per group and giving them a fresh retry budget."""

    def __init__(
        self,
        store: TaskStore,
        queries: TaskQueries,
        queue: TaskQueue,
        clock: Clock,
        *,
        every_group: Callable[[], list[str]] | None = None,
    ) -> None:
        self._store = store
        self._every_group = every_group
        self._queries = queries
        self._queue = queue
        self._clock = clock

    def page(self, query: DeadLetterQuery, principal: Principal) -> TaskPage:
        """Dead letters of one group, or of all the caller's groups merged, newest first."""
        groups = listed_groups(query.group, principal, "dead letters", self._every_group)
        if query.cursor is not None:
            dlq_after(query.cursor)  # refuse a bad cursor even when the caller has no group to list
        pages = [self._queries.dead_lettered(group, query.limit, query.cursor) for group in groups]
        if len(pages) == 1:
            return TaskPage(*pages[0])
        # Every group's page holds its newest ``limit`` after the cursor, so the newest ``limit`` of their
        # union are the merged page; the cursor is a position in the shared order, valid for every group.
        merged = sorted((task for items, _ in pages for task in items), key=dlq_position, reverse=True)
        more = len(merged) > query.limit or any(cursor is not None for _, cursor in pages)
        items = merged[: query.limit]
        return TaskPage(items, dlq_cursor(items[-1]) if more and items else None)

    def redrive_task(self, task_id: str, principal: Principal) -> Task:
        """Queue a ``failed`` task again with a fresh retry budget; ``IllegalTransition`` if it is not failed."""
        task = visible_task(self._store, task_id, principal)
        now = self._clock.now()
        task = mutate(self._store, task, lambda t: t.redrive(principal.name, now))
        self._send(task)
        return task

    def redrive(self, cmd: RedriveDeadLetters, principal: Principal) -> Redriven:
        """Redrive the given failed tasks of a group (others are skipped), or else its newest ``limit``."""
        if not principal.can_see(cmd.group):
            raise Forbidden(f"{principal.name} may not redrive group {cmd.group!r}", group=cmd.group)
        candidates = self._by_ids(cmd) if cmd.ids is not None else self._newest(cmd)
        if cmd.dry_run:
            return Redriven([task.id for task in candidates])
        now = self._clock.now()
        done: list[str] = []
        for candidate in candidates:
            try:
                task = mutate(self._store, candidate, lambda t: t.redrive(principal.name, now))
            except IllegalTransition:
                continue  # redriven or changed meanwhile
            self._send(task)
            done.append(task.id)
        return Redriven(done)

    def _by_ids(self, cmd: RedriveDeadLetters) -> list[Task]:
        found: list[Task] = []
        for task_id in dict.fromkeys(cmd.ids or ()):
            if not TASK_ID.fullmatch(task_id):
                continue
            try:
                task = self._store.get(task_id)
            except TaskNotFound:
                continue
            if task.group == cmd.group and task.status is Status.FAILED:
                found.append(task)
        return found

    def _newest(self, cmd: RedriveDeadLetters) -> list[Task]:
        # The index may lag the table by a moment: a task redriven just now can still be listed.
        tasks, _ = self._queries.dead_lettered(cmd.group, cmd.limit)
        return [task for task in tasks if task.status is Status.FAILED]

    def _send(self, task: Task) -> None:
        try:
            self._queue.send(task)
        except QueueUnavailable:
            # The task is durable and queued: the reaper re-sends tasks left queued (docs/ARCHITECTURE.md).
            log.warning("enqueue after redrive failed; the reaper will re-send", extra={"task_id": task.id})
