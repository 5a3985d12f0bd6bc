"""Use cases: what the services do with the domain, the store and the queue."""

from __future__ import annotations

import copy
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import JsonValue

from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask, UpdateTask
from tqcore.domain.errors import (
    Forbidden,
    IdempotencyMismatch,
    InvalidPayload,
    PreconditionFailed,
    TaskNotFound,
    TqError,
    UnknownTaskType,
    VersionConflict,
)
from tqcore.domain.model import Status
from tqcore.domain.scripts import SCRIPT_TYPE, ScriptAllowList
from tqcore.domain.task import Task
from tqcore.errors import QueueUnavailable, StoreUnavailable
from tqcore.payload_schemas import PayloadSchemas
from tqcore.pools import pools_of
from tqcore.ports import Clock, DuplicateRequest, IdempotencyRecord, Registry, TaskQueue, TaskStore, TypeInfo
from tqcore.tracing import current_trace_context

log = logging.getLogger(__name__)

#: The shape of a task id (ULIDs, and the short ids tests use); anything else cannot name a task.
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

#: How often a writer re-reads and re-applies its change after losing a version race.
MAX_CONFLICT_RETRIES = 8


def mutate(store: TaskStore, task: Task, change: Callable[[Task], None]) -> Task:
    """Apply ``change`` and commit; on a lost race re-apply it to the current task (the domain re-checks).

    Domain errors from ``change`` (an illegal transition, a stale attempt) propagate unchanged.
    """
    task = copy.deepcopy(task)  # a change that fails to commit must not leak into the caller's object
    for attempt in range(MAX_CONFLICT_RETRIES):
        change(task)
        try:
            store.commit(task)
            return task.committed()
        except VersionConflict as conflict:
            if attempt == MAX_CONFLICT_RETRIES - 1:
                raise
            time.sleep(0.005 * 2**attempt)
            task = conflict.current if conflict.current is not None else store.get(task.id)
    raise AssertionError("unreachable")


class Catalog:
    """The registered task types (their pools, defaults, payload schemas and published specs), cached (a miss
    refreshes at most once a second), and the groups tasks were submitted into (each recorded once per process)."""

    def __init__(self, registry: Registry, *, ttl_s: float = 5.0) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._types: dict[str, TypeInfo] = {}
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()
        self._noted: set[str] = set()
        self._allow_lists: dict[str, ScriptAllowList] = {}
        self._schemas = PayloadSchemas()

    def note_group(self, group: str) -> None:
        """Make sure ``group`` is in the registry (one write per group and process)."""
        if group in self._noted:
            return
        self._registry.add_group(group)
        with self._lock:
            self._noted.add(group)

    def groups(self) -> list[str]:
        """Every group tasks were submitted into, sorted (what an admin's listings span)."""
        return sorted(self._registry.groups())

    def pools(self) -> list[str]:
        """The pools whose queues are in use: the default pool and every pool a type belongs to."""
        return pools_of(self._fresh(max_age_s=self._ttl_s).values())

    def require(self, type_name: str, payload: JsonValue = None) -> TypeInfo:
        """The catalog record of ``type_name``: ``UnknownTaskType`` unless some executor registered it, and
        ``InvalidPayload`` if its payload schema or published spec refuses ``payload`` (a refusal is checked again
        on a fresh catalog, as a miss is)."""
        try:
            return self._check(self._fresh(max_age_s=self._ttl_s), type_name, payload)
        except (UnknownTaskType, InvalidPayload):
            return self._check(self._fresh(max_age_s=1.0), type_name, payload)

    def _check(self, types: dict[str, TypeInfo], type_name: str, payload: JsonValue) -> TypeInfo:
        info = types.get(type_name)
        if info is None:
            raise UnknownTaskType(f"no executor handles task type {type_name!r}", type=type_name)
        if type_name == SCRIPT_TYPE:
            self._allow_list(info.spec).check(payload)
        if info.payload_schema is not None:
            self._schemas.check(type_name, info.payload_schema, payload)
        return info

    def _allow_list(self, spec: str | None) -> ScriptAllowList:
        """The published allow-list; none (an executor from before allow-lists) refuses every script."""
        if spec is None:
            raise InvalidPayload(
                "the script executors published no allow-list (they predate it): no script is accepted",
                errors=[{"loc": ["payload", "argv"], "msg": "no script allow-list is published"}],
            )
        if (parsed := self._allow_lists.get(spec)) is None:
            parsed = self._allow_lists[spec] = ScriptAllowList.parse(spec, published=True)
        return parsed

    def _fresh(self, *, max_age_s: float) -> dict[str, TypeInfo]:
        with self._lock:
            if time.monotonic() - self._loaded_at > max_age_s:
                self._types = self._registry.task_types()
                self._loaded_at = time.monotonic()
            return self._types


@dataclass(frozen=True)
class Submitted:
    """The outcome of a submit: the task, and whether it was an idempotent replay."""

    task: Task
    replayed: bool


class Tasks:
    """The API's use cases on tasks."""

    def __init__(
        self,
        store: TaskStore,
        queue: TaskQueue,
        catalog: Catalog,
        clock: Clock,
        new_id: Callable[[], str],
    ) -> None:
        self._store = store
        self._queue = queue
        self._catalog = catalog
        self._clock = clock
        self._new_id = new_id

    def submit(self, cmd: SubmitTask, principal: Principal) -> Submitted:
        """Accept a task durably, then enqueue it; a replayed idempotency key returns the first task."""
        task, record = self._prepare(cmd, principal)
        try:
            self._create(task, record)
        except DuplicateRequest as duplicate:
            return self._replay(cmd, duplicate)
        task = task.committed()
        if task.status is Status.QUEUED:
            self._send(task)
        return Submitted(task, replayed=False)

    def submit_many(self, cmds: Sequence[SubmitTask], principal: Principal) -> list[Submitted | TqError]:
        """:meth:`submit` for each command on its own (its own checks, its own idempotency key), with shared
        writes: the store's ``create_many`` and one ``send_batch``. Per command its outcome or its error; raises
        ``StoreUnavailable`` when the store was unavailable and created none of them (the whole request failed)."""
        outcomes: list[Submitted | TqError | None] = [None] * len(cmds)
        prepared: dict[int, tuple[Task, IdempotencyRecord | None]] = {}
        for n, cmd in enumerate(cmds):
            try:
                prepared[n] = self._prepare(cmd, principal)
            except TqError as error:
                outcomes[n] = error
        for attempt in range(MAX_CONFLICT_RETRIES):  # a conflict is a concurrent submit of the same key: see _create
            conflicts = {}
            for n, result in zip(prepared, self._store.create_many(list(prepared.values())), strict=True):
                if isinstance(result, VersionConflict) and attempt < MAX_CONFLICT_RETRIES - 1:
                    conflicts[n] = prepared[n]
                else:
                    outcomes[n] = self._outcome(cmds[n], prepared[n][0], result)
            if not conflicts:
                break
            time.sleep(0.01 * 2**attempt)
            prepared = conflicts
        done = [outcome for outcome in outcomes if outcome is not None]
        created = [o.task for o in done if isinstance(o, Submitted) and not o.replayed]
        down = next((o for o in done if isinstance(o, StoreUnavailable)), None)
        if down is not None and not created:
            raise down
        self._send_many([task for task in created if task.status is Status.QUEUED])
        return done

    def _prepare(self, cmd: SubmitTask, principal: Principal) -> tuple[Task, IdempotencyRecord | None]:
        """The new task a submit makes, and its idempotency record: ``Forbidden``, ``UnknownTaskType`` or
        ``InvalidPayload`` if it may not be made."""
        if not principal.can_submit(cmd.group):
            raise Forbidden(f"{principal.name} may not submit into group {cmd.group!r}", group=cmd.group)
        info = self._catalog.require(cmd.type, cmd.payload)
        self._catalog.note_group(cmd.group)  # before the task exists, so an admin's listing always finds it
        filled = cmd.with_defaults(info.defaults)  # the fingerprint stays the request's own (``cmd``)
        task = Task.submit(
            task_id=self._new_id(),
            owner=principal.name,
            now=self._clock.now(),
            submitted=filled.model_dump(mode="json"),
            trace_context=current_trace_context(),  # its runs join the request's trace
            pool=info.pool,
            **filled.task_fields(),
        )
        record = None
        if cmd.idempotency_key is not None:
            record = IdempotencyRecord(cmd.group, cmd.idempotency_key, cmd.fingerprint(), task.id)
        return task, record

    def _outcome(self, cmd: SubmitTask, task: Task, result: Exception | None) -> Submitted | TqError:
        """One batch item's outcome from what the store answered for its task."""
        try:
            if isinstance(result, DuplicateRequest):
                return self._replay(cmd, result)
            if result is not None:
                raise result
        except TqError as error:
            return error
        return Submitted(task.committed(), replayed=False)

    def _replay(self, cmd: SubmitTask, duplicate: DuplicateRequest) -> Submitted:
        """The task a taken idempotency key made, if the request is the same (else ``IdempotencyMismatch``)."""
        if duplicate.record.fingerprint != cmd.fingerprint():
            raise IdempotencyMismatch(
                "this idempotency key was used with a different request", key=cmd.idempotency_key
            ) from None
        return Submitted(self._store.get(duplicate.record.task_id), replayed=True)

    def _create(self, task: Task, record: IdempotencyRecord | None) -> None:
        # A concurrent submit with the same key can make the transaction conflict rather than fail
        # its condition; once the winner commits, the retry sees its record.
        for attempt in range(MAX_CONFLICT_RETRIES):
            try:
                self._store.create(task, record)
                return
            except VersionConflict:
                if attempt == MAX_CONFLICT_RETRIES - 1:
                    raise
                time.sleep(0.01 * 2**attempt)

    def _send(self, task: Task) -> None:
        try:
            self._queue.send(task)
        except QueueUnavailable:
            # The task is durable and queued: the reaper re-sends tasks left queued (docs/ARCHITECTURE.md).
            log.warning("enqueue failed; the reaper will re-send", extra={"task_id": task.id}, exc_info=True)

    def _send_many(self, tasks: Sequence[Task]) -> None:
        if not tasks:
            return
        try:
            self._queue.send_batch(tasks)
        except QueueUnavailable:  # as in _send: the reaper re-sends the ones that did not go
            log.warning("enqueue of a batch failed in part; the reaper will re-send", exc_info=True)

    def update(self, task_id: str, cmd: UpdateTask, principal: Principal, *, if_match: int | None = None) -> Task:
        """PATCH: change fields; a new schedule, payload or priority takes effect for the next run."""
        changes = cmd.changes()
        if "payload" in changes:  # checked as at submit: a PATCH must not slip in what a submit may not
            self._catalog.require(self.get(task_id, principal).type, changes["payload"])
        return self._change(
            task_id, principal, if_match, lambda t: t.update(changes, principal.name, self._clock.now())
        )

    def cancel(self, task_id: str, principal: Principal, *, if_match: int | None = None) -> Task:
        """DELETE: cancel at once, or ask the running attempt to stop (the task then ends ``cancelled``)."""
        return self._change(task_id, principal, if_match, lambda t: t.request_cancel(principal.name, self._clock.now()))

    def pause(self, task_id: str, principal: Principal) -> Task:
        """A repeating task starts no attempt until it is resumed; an attempt running finishes first."""
        return self._change(task_id, principal, None, lambda t: t.pause(principal.name, self._clock.now()))

    def resume(self, task_id: str, principal: Principal) -> Task:
        """A paused task goes on with its next slot; the slots passed while it was paused are recorded as skipped."""
        return self._change(task_id, principal, None, lambda t: t.resume(principal.name, self._clock.now()))

    def _change(self, task_id: str, principal: Principal, if_match: int | None, change: Callable[[Task], None]) -> Task:
        """Apply a user's change. With ``If-Match`` the change applies to that version or not at all (412);
        without, it is re-applied to the current version when another writer (say, the scheduler) wins."""
        task = self.get(task_id, principal)
        if if_match is None:
            return mutate(self._store, task, change)
        if task.version != if_match:
            raise PreconditionFailed(f"the task is at version {task.version}, not {if_match}", version=task.version)
        work = copy.deepcopy(task)
        change(work)
        try:
            self._store.commit(work)
        except VersionConflict as conflict:
            current = conflict.current.version if conflict.current is not None else None
            raise PreconditionFailed(f"the task changed after version {if_match}", version=current) from None
        return work.committed()

    def get(self, task_id: str, principal: Principal) -> Task:
        """A task the principal may see; others (and ids that cannot exist) are reported as not found."""
        if not TASK_ID.fullmatch(task_id):
            raise TaskNotFound(f"no task {task_id[:64]}")
        task = self._store.get(task_id)
        if not principal.can_see(task.group):
            raise TaskNotFound(f"no task {task_id}", task_id=task_id)
        return task
