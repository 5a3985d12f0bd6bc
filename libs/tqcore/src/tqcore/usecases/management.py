"""Use cases of the read side and the dead letters: a task's runs and events, listing and redriving failures."""

from __future__ import annotations

import heapq
import logging
import re
from collections.abc import Callable

from tqcore.clock import SystemClock
from tqcore.documents import ListedTask
from tqcore.domain.access import Principal
from tqcore.domain.codec import ts
from tqcore.domain.errors import InvalidCursor, LogExpired, RunNotFound, TaskNotFound
from tqcore.domain.model import Event, RunStatus, Status
from tqcore.domain.requests import DeadLetterQuery, EventPageQuery, PageQuery, RedriveDeadLetters
from tqcore.domain.runs import Run, RunsPosition
from tqcore.domain.task import Task
from tqcore.errors import QueueUnavailable
from tqcore.listing import PAGE_BYTES, Page, PageRules, TaskPage, fill_page, listed_groups
from tqcore.ports import Clock, RunLogStore, TaskQueue, TaskStore
from tqcore.queries import TaskQueries, decode_cursor, dlq_after, encode_cursor
from tqcore.usecases.bulk import Affected, apply_each, by_ids, newest, require_group
from tqcore.usecases.history_reads import events_page, newest_run, runs_page
from tqcore.usecases.service import TASK_ID, mutate

log = logging.getLogger(__name__)

_RUNS = "runs"
_EVENTS = "events"
_SEQ = re.compile(r"[0-9]{1,12}")
_RUNS_POSITION = re.compile(r"([0-9]{1,12})\.([0-9]{1,12})\.([0-9]{1,12})")


def visible_task(store: TaskStore, task_id: str, principal: Principal) -> Task:
    """The task if the principal may see it; otherwise (and for ids that cannot exist) ``TaskNotFound``."""
    if not TASK_ID.fullmatch(task_id):
        raise TaskNotFound(f"no task {task_id[:64]}")
    task = store.get(task_id)
    if not principal.can_see(task.group):
        raise TaskNotFound(f"no task {task_id}", task_id=task_id)
    return task


class TaskHistory:
    """What happened to a task: its events, its runs projected from them, and each run's log."""

    def __init__(self, store: TaskStore, logs: RunLogStore | None = None, clock: Clock | None = None) -> None:
        self._store = store
        self._logs = logs
        self._clock = clock or SystemClock()

    def events(self, task_id: str, principal: Principal, query: EventPageQuery | None = None) -> Page[Event]:
        """A page of the events of a task the principal may see, oldest first; ``InvalidCursor`` for a cursor
        not from this listing."""
        query = query or EventPageQuery()
        task = visible_task(self._store, task_id, principal)
        after = 0 if query.cursor is None else _position(_EVENTS, query.cursor, task.version)
        events, next_after = events_page(self._store, task_id, after, query.limit, task.version)
        return Page(events, None if next_after is None else encode_cursor(_EVENTS, str(next_after)))

    def visible(self, task_id: str, principal: Principal) -> Task:
        """The task if the principal may see it (``TaskNotFound`` otherwise): what :meth:`events_after` follows."""
        return visible_task(self._store, task_id, principal)

    def events_after(self, task: Task, after_seq: int, limit: int) -> list[Event]:
        """At most ``limit`` events of a task :meth:`visible` returned, after ``after_seq``, oldest first (a task
        never changes group, so one access check serves a follower's every read)."""
        return self._store.events(task.id, after_seq=after_seq, limit=limit)

    def runs(self, task_id: str, principal: Principal, query: PageQuery) -> Page[Run]:
        """A page of the task's runs, newest first, reading only as much history as the page needs; raises
        ``InvalidCursor`` for a cursor not from this listing."""
        task = visible_task(self._store, task_id, principal)
        position = (
            RunsPosition.newest(task.version) if query.cursor is None else _runs_position(query.cursor, task.version)
        )
        page, older = runs_page(self._store, task_id, position, query.limit)
        return Page(page, None if older is None else encode_cursor(_RUNS, _runs_cursor(older)))

    def run_log(self, task_id: str, run_id: str, principal: Principal) -> bytes:
        """One run's captured output (empty if it printed nothing).

        ``RunNotFound`` for an unknown run or one that recorded no log (still running, lost); ``LogExpired``
        past its ``log_expires_at``, or when the object is gone although the run recorded one.
        """
        task = visible_task(self._store, task_id, principal)
        run = newest_run(self._store, task_id, task.version, run_id)
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


def _position(kind: str, cursor: str, version: int) -> int:
    """The seq an events cursor holds: one this listing could have handed out for a task at ``version``."""
    position = decode_cursor(kind, cursor)
    if not _SEQ.fullmatch(position) or int(position) > version:
        raise InvalidCursor()
    return int(position)


def _runs_cursor(position: RunsPosition) -> str:
    return f"{position.before}.{position.top}.{position.close}"


def _runs_position(cursor: str, version: int) -> RunsPosition:
    match = _RUNS_POSITION.fullmatch(decode_cursor(_RUNS, cursor))
    if match is None:
        raise InvalidCursor()
    position = RunsPosition(*(int(part) for part in match.groups()))
    if not position.fits(version):
        raise InvalidCursor()
    return position


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
        page_bytes: int = PAGE_BYTES,
    ) -> None:
        self._store = store
        self._every_group = every_group
        self._page_bytes = page_bytes
        self._queries = queries
        self._queue = queue
        self._clock = clock

    def page(self, query: DeadLetterQuery, principal: Principal) -> TaskPage:
        """Dead letters of one group, or of all the caller's groups merged, newest first."""
        before = None if query.cursor is None else dlq_after(query.cursor)  # refused even with no group to list
        groups = listed_groups(query.group, principal, "dead letters", self._every_group)
        # Positions (``<finished_at>#<id>``) order every group alike, so a lazy merge of the groups' streams is
        # the newest-first order of their union (no group read further than the page needs), and a cursor is a
        # position valid in each.
        positions = heapq.merge(*(self._queries.dead_letter_positions(group, before) for group in groups), reverse=True)

        def keep(position: str, task: ListedTask) -> bool:
            # The snapshot is read consistently, the index may lag it: a task redriven (or failed again, at a
            # newer position) since the index was written is not listed here.
            return (
                task.status is Status.FAILED
                and task.dlq_position == position
                and (query.type is None or task.type == query.type)
            )

        rules = PageRules(query.limit, self._page_bytes, filtered=query.type is not None)
        return fill_page(positions, self._queries.listed, keep, rules, "dlq")

    def redrive_task(self, task_id: str, principal: Principal) -> Task:
        """Queue a ``failed`` task again with a fresh retry budget; ``IllegalTransition`` if it is not failed."""
        task = visible_task(self._store, task_id, principal)
        now = self._clock.now()
        task = mutate(self._store, task, lambda t: t.redrive(principal.name, now))
        self._send(task)
        return task

    def redrive(self, cmd: RedriveDeadLetters, principal: Principal) -> Affected:
        """Redrive the given failed tasks of a group (others are skipped), or else its newest ``limit``."""
        require_group(principal, cmd.group, "redrive")

        def keep(task: Task) -> bool:
            return task.status is Status.FAILED and (cmd.type is None or task.type == cmd.type)

        if cmd.ids is not None:
            candidates = by_ids(self._store, cmd.ids, cmd.group, keep)
        else:
            # The index may lag the table by a moment: a task redriven just now can still be listed.
            ids = (task_id for _, task_id in self._queries.dead_letter_positions(cmd.group))
            candidates = newest(self._queries, ids, keep, cmd.limit)
        now = self._clock.now()
        return apply_each(
            self._store, candidates, lambda t: t.redrive(principal.name, now), dry_run=cmd.dry_run, then=self._send
        )

    def _send(self, task: Task) -> None:
        try:
            self._queue.send(task)
        except QueueUnavailable:
            # The task is durable and queued: the reaper re-sends tasks left queued (docs/ARCHITECTURE.md).
            log.warning("enqueue after redrive failed; the reaper will re-send", extra={"task_id": task.id})
