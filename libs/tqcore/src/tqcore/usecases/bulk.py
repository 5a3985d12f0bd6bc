"""Actions on many tasks of one group at once (redrive its dead letters, cancel by ids or by filter): which tasks,
read a few at a time, each changed on its own exactly as the one-task action changes it."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from tqcore.domain.access import Principal
from tqcore.domain.errors import Forbidden, IllegalTransition, TaskNotFound
from tqcore.domain.model import Status
from tqcore.domain.requests import CancelTasks
from tqcore.domain.task import Task
from tqcore.ports import Clock, TaskStore
from tqcore.queries import TaskQueries
from tqcore.usecases.service import TASK_ID, mutate

#: Tasks a bulk action reads at a time: whatever their payloads, an action on 1,000 holds a few at once.
BULK_BATCH = 10


@dataclass(frozen=True)
class Affected:
    """Which tasks a bulk action changed (or, on a dry run, would have)."""

    ids: list[str]

    @property
    def count(self) -> int:
        """How many."""
        return len(self.ids)


def require_group(principal: Principal, group: str, verb: str) -> None:
    """``Forbidden`` unless the principal may see ``group`` (an admin may see every group)."""
    if not principal.can_see(group):
        raise Forbidden(f"{principal.name} may not {verb} group {group!r}", group=group)


def by_ids(store: TaskStore, ids: Iterable[str], group: str, keep: Callable[[Task], bool]) -> Iterator[Task]:
    """The tasks of ``ids`` (each once, in the order given) that are in ``group`` and that ``keep`` accepts; ids of
    no task, or of another group's task, are skipped alike, so nothing is revealed about other groups."""
    for task_id in dict.fromkeys(ids):
        if not TASK_ID.fullmatch(task_id):
            continue
        try:
            task = store.get(task_id)
        except TaskNotFound:
            continue
        if task.group == group and keep(task):
            yield task


def newest(queries: TaskQueries, ids: Iterator[str], keep: Callable[[Task], bool], limit: int) -> Iterator[Task]:
    """The first ``limit`` tasks of ``ids`` (a newest-first stream) that ``keep`` accepts, read ``BULK_BATCH``
    at a time as the caller consumes them."""

    def kept() -> Iterator[Task]:
        while chunk := list(itertools.islice(ids, BULK_BATCH)):
            # The index may lag the table by a moment: ``keep`` judges the snapshot, not the index entry.
            yield from (task for task in queries.tasks(chunk) if keep(task))

    return itertools.islice(kept(), limit)


def apply_each(
    store: TaskStore,
    candidates: Iterable[Task],
    change: Callable[[Task], None],
    *,
    dry_run: bool,
    then: Callable[[Task], None] | None = None,
) -> Affected:
    """``change`` each candidate in its own commit (then ``then`` on it), skipping those it finds illegal by now
    (changed meanwhile); a dry run changes nothing and names them all."""
    if dry_run:
        return Affected([task.id for task in candidates])
    done: list[str] = []
    for candidate in candidates:  # read a few at a time as they are changed, never all at once
        try:
            task = mutate(store, candidate, change)
        except IllegalTransition:
            continue
        if then is not None:
            then(task)
        done.append(task.id)
    return Affected(done)


def cancellable(task: Task) -> bool:
    """Whether cancelling the task would change it: not ended, and not a run already told to stop."""
    return not task.status.is_terminal and not (task.status is Status.RUNNING and task.cancel_requested)


class BulkCancel:
    """``POST /v1/tasks:cancel``: cancel a group's tasks by ids or by filter, each as ``DELETE`` cancels one."""

    def __init__(self, store: TaskStore, queries: TaskQueries, clock: Clock) -> None:
        self._store = store
        self._queries = queries
        self._clock = clock

    def cancel(self, cmd: CancelTasks, principal: Principal) -> Affected:
        """Cancel the given tasks of the group that match the filter (others are skipped), or else its newest
        ``limit`` that match; ``Forbidden`` for a group the principal is not in."""
        require_group(principal, cmd.group, "cancel tasks of")

        def keep(task: Task) -> bool:
            return (
                cancellable(task)
                and (cmd.status is None or task.status is cmd.status)
                and (cmd.type is None or task.type == cmd.type)
            )

        if cmd.ids is not None:
            candidates = by_ids(self._store, cmd.ids, cmd.group, keep)
        else:
            candidates = newest(self._queries, self._queries.newest_ids(cmd.group), keep, cmd.limit)
        now = self._clock.now()

        def cancel(task: Task) -> None:
            if not keep(task):  # ended, told to stop or moved on since it was read: not counted
                raise IllegalTransition(f"task {task.id} no longer matches")
            task.request_cancel(principal.name, now)

        return apply_each(self._store, candidates, cancel, dry_run=cmd.dry_run)
