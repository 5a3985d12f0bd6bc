"""Use cases of the read side and the dead letters: a task's runs and events, listing and redriving failures."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from tqcore.domain.access import Principal
from tqcore.domain.errors import (
    Forbidden,
    GroupRequired,
    IllegalTransition,
    InvalidCursor,
    QueueUnavailable,
    TaskNotFound,
)
from tqcore.domain.model import Event, Status
from tqcore.domain.requests import DeadLetterQuery, PageQuery, RedriveDeadLetters
from tqcore.domain.runs import Run, page_of_runs, project_runs
from tqcore.domain.task import Task
from tqcore.ports import Clock, TaskQueue, TaskStore
from tqcore.queries import TaskQueries, decode_cursor, dlq_after, dlq_cursor, dlq_position, encode_cursor
from tqcore.service import TASK_ID, mutate

log = logging.getLogger(__name__)

_RUNS = "runs"
_SEQ = re.compile(r"[0-9]{1,12}")


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


class TaskHistory:
    """What happened to a task: its events, and its runs projected from them."""

    def __init__(self, store: TaskStore) -> None:
        self._store = store

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


def _run_position(cursor: str) -> int:
    position = decode_cursor(_RUNS, cursor)
    if not _SEQ.fullmatch(position):
        raise InvalidCursor()
    return int(position)


class DeadLetters:
    """Failed tasks: listing them per group and giving them a fresh retry budget."""

    def __init__(self, store: TaskStore, queries: TaskQueries, queue: TaskQueue, clock: Clock) -> None:
        self._store = store
        self._queries = queries
        self._queue = queue
        self._clock = clock

    def page(self, query: DeadLetterQuery, principal: Principal) -> TaskPage:
        """Dead letters of one group, or of all the caller's groups merged, newest first."""
        groups = self._groups(query.group, principal)
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

    @staticmethod
    def _groups(group: str | None, principal: Principal) -> list[str]:
        if group is not None:
            if not principal.can_see(group):
                raise Forbidden(f"{principal.name} may not read group {group!r}", group=group)
            return [group]
        if principal.admin:
            raise GroupRequired("name a group: an admin's dead letters would span every group")
        return sorted(principal.groups)

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
