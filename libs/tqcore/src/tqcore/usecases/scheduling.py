"""The scheduler's use case: act on every task whose time has come, once, however many replicas run.

Each due task is changed by one conditional commit (``Task.on_due``): queued, expired, or (a repeating task
with a run under way) its due slot skipped, kept waiting or spawned. A replica that loses the race re-reads
the task, finds it no longer due, and moves on. The due work is read in stable parts, in parallel, and
replicas divide the parts: each drains its own share first and the others' after, so replicas rarely collide but
a dead replica's share is still drained. Queued tasks are sent to SQS in batches of ten.

A run due within ``stage_s`` is *staged*: its change is committed ahead, as of its time (``queued_at`` is that
time), and a sender thread puts it on the queue when the time comes. A peak of hundreds due at one instant is
then committed before the instant and sent at it, instead of being written while executors compete for the
same instant (Quartz acquires triggers a time window ahead for the same reason). If the scheduler dies
between the commit and the send, the reaper re-sends the task (it is ``queued`` and unclaimed).

A change that fails (the store unavailable) is tried again within the pass after short pauses, while the other
tasks go on; one that still fails is logged, counted and reported in ``Pass.unhandled``, so the scheduler
keeps its mark behind it. Besides what is due since the mark, a pass may *sweep*: read every due task that is not
queued, however old (``TaskStore.overdue``).
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter as Tally
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client import Counter

from tqcore import tracing
from tqcore.domain.errors import IllegalTransition, VersionConflict
from tqcore.domain.model import Event, EventType, Overlap, Status
from tqcore.domain.task import BUSY, Task
from tqcore.errors import QueueUnavailable
from tqcore.outbox import SEND_BATCH, Outbox
from tqcore.ports import Clock, TaskQueue, TaskStore
from tqcore.usecases.service import mutate

log = logging.getLogger(__name__)

#: A due task whose change failed is tried again after these pauses within the pass, then left to the next
#: passes: a short store hiccup costs no pass, and a task that keeps failing holds a pass up by 0.25 s at most.
COMMIT_RETRY_PAUSES_S = (0.05, 0.2)

SCHEDULER_ACTIONS = Counter(
    "tq_scheduler_actions_total", "Changes the scheduler made to due tasks, by the event recorded.", ["event"]
)
SLOTS_SKIPPED = Counter(
    "tq_schedule_slots_skipped_total",
    "Slots of repeating tasks that did not run: overlap (skip, or queue already full), catch_up (one run "
    "stood for several missed slots), starting_deadline (too late to start), expired.",
    ["reason"],
)
COMMIT_FAILURES = Counter(
    "tq_scheduler_commit_failures_total",
    "Due tasks a pass could not change even after its retries (the next passes try again; the mark waits).",
)


@dataclass
class Pass:
    """What one pass did, and when the earliest task it saw but left alone falls due."""

    events: Tally[str] = field(default_factory=Tally)
    next_wake: datetime | None = None
    #: Due tasks whose change failed on every try, by id, with their ``wake_at``: the mark must wait for them.
    unhandled: dict[str, datetime] = field(default_factory=dict)

    @property
    def queued(self) -> int:
        """Runs and retries put on a queue."""
        return self.events[EventType.QUEUED.value]

    def merge(self, other: Pass) -> None:
        """Fold another part's pass into this one."""
        self.events.update(other.events)
        self.wake(other.next_wake)
        self.unhandled.update(other.unhandled)

    def leave(self, task: Task, error: Exception | None) -> None:
        """Record a due task whose change failed on every try: logged, counted, and kept for the mark."""
        assert task.wake_at is not None
        self.unhandled[task.id] = task.wake_at
        COMMIT_FAILURES.inc()
        log.warning(
            "could not act on a due task (%s); the next passes try again",
            error,
            extra={"task_id": task.id, "wake_at": task.wake_at.isoformat()},
            exc_info=error,
        )

    def wake(self, at: datetime | None) -> None:
        """Remember ``at`` if it is the earliest wake-up seen."""
        if at is not None and (self.next_wake is None or at < self.next_wake):
            self.next_wake = at


@dataclass(frozen=True)
class Acted:
    """What acting on one due task did: the tasks to send, the events committed, the task's next wake-up."""

    send: list[Task] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    wake_at: datetime | None = None
    #: For a staged change: when to send (``None``: at once).
    send_at: datetime | None = None


@dataclass(frozen=True)
class _Due:
    """A due task to act on: now, or staged as of ``staged_at``; ``error`` is why the last try failed."""

    task: Task
    staged_at: datetime | None
    error: Exception | None = None


class Promoter:
    """Drains the ``due`` index: one instance per scheduler process."""

    def __init__(
        self,
        store: TaskStore,
        queue: TaskQueue,
        clock: Clock,
        *,
        parts: int = 4,
        starting_deadline_s: float,
        lookahead_s: float = 0.0,
        stage_s: float = 0.0,
        workers: int = 16,
        actor: str = "scheduler",
        retry_pauses_s: Sequence[float] = COMMIT_RETRY_PAUSES_S,
    ) -> None:
        self._store = store
        self._retry_pauses_s = tuple(retry_pauses_s)
        self._queue = queue
        self._clock = clock
        self._parts = parts
        self._deadline_s = starting_deadline_s
        self._stage = timedelta(seconds=stage_s)
        self._lookahead = max(timedelta(seconds=lookahead_s), self._stage)
        self._outbox = Outbox(self._send, clock)
        self._actor = actor
        self._waves: list[list[int]] = [list(range(parts))]
        self._parts_pool = ThreadPoolExecutor(max_workers=parts + 1, thread_name_prefix="part")
        #: Commits are round trips: many in flight keep a peak (hundreds due at once) short.
        self._acts_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="promote")

    def divide(self, rank: int, replicas: int) -> None:
        """Take parts ``rank``, ``rank + replicas``, ... first (this replica's share), the others after."""
        own = [p for p in range(self._parts) if p % max(replicas, 1) == rank % max(replicas, 1)]
        others = [p for p in range(self._parts) if p not in own]
        self._waves = [wave for wave in (own, others) if wave]

    def run(self, since: datetime, *, sweep_before: datetime | None = None) -> Pass:
        """Act on every task due from ``since`` by now; note the earliest one due within the look-ahead. With
        ``sweep_before``, also on every task due before it that is not queued, however old (the sweep)."""
        now = self._clock.now()
        done = Pass()
        swept = self._parts_pool.submit(self._act_on, self._store.overdue(sweep_before), now) if sweep_before else None
        for wave in self._waves:
            for part_pass in self._parts_pool.map(lambda part: self._drain(since, part, now), wave):
                done.merge(part_pass)
        if swept is not None:
            done.merge(swept.result())
        return done

    def _drain(self, since: datetime, part: int, now: datetime) -> Pass:
        """Act on one part's due tasks."""
        return self._act_on(self._store.due(since, now + self._lookahead, part=(part, self._parts)), now)

    def _act_on(self, found: Iterable[Task], now: datetime) -> Pass:
        """Act on each due task found, in the shared pool. A task whose change failed is tried again after
        each pause of ``retry_pauses_s``; what still fails is left to the next passes (``Pass.unhandled``)."""
        done = Pass()
        pending: list[_Due] = []
        for task in found:
            wake_at = task.wake_at
            if wake_at is not None and wake_at <= now:
                pending.append(_Due(task, None))
            elif wake_at is not None and wake_at <= now + self._stage and task.stageable():
                pending.append(_Due(task, wake_at))
            else:
                done.wake(wake_at)
        for pause_s in (0.0, *self._retry_pauses_s):
            if not pending:
                break
            time.sleep(pause_s)
            pending = self._act_round(pending, done)
        for due in pending:
            done.leave(due.task, due.error)
        return done

    def _act_round(self, acting: list[_Due], done: Pass) -> list[_Due]:
        """Act on every task once and send what got queued; the tasks whose change failed, with the error."""
        futures = {self._acts_pool.submit(self._promote, due.task, due.staged_at): due for due in acting}
        failed: list[_Due] = []
        outbox: list[Task] = []
        for future in as_completed(futures):
            try:
                acted = future.result()
            except Exception as error:  # noqa: BLE001 -- logged by Pass.leave if no retry succeeds
                # One task's failure (a store outage) must not cost the others their send.
                failed.append(_Due(futures[future].task, futures[future].staged_at, error))
                continue
            _count(acted.events, done)
            done.wake(acted.wake_at)
            if acted.send_at is not None:
                self._outbox.put(acted.send_at, acted.send)
                continue
            outbox += acted.send
            if len(outbox) >= SEND_BATCH:
                self._send(outbox[:SEND_BATCH])
                outbox = outbox[SEND_BATCH:]
        self._send(outbox)
        return failed

    def _promote(self, task: Task, staged_at: datetime | None) -> Acted:
        """:meth:`_act` within the task's ``tq.promote`` span: its commit, and the send and attempt that follow,
        are in the run's trace."""
        with tracing.promotion(task, self._clock.now()) as span:
            acted = self._act(task, staged_at)
            span.set_attribute("tq.events", [event.type.value for event in acted.events])
            return acted

    def _act(self, task: Task, staged_at: datetime | None) -> Acted:
        """Commit the task's due change: now (read at commit time, so ``queued_at`` tells when it really
        happened), or, staged, as of ``staged_at``."""
        recorded: list[Event] = []
        deadline = self._deadline_s
        spawned = None
        if task.overlap is Overlap.ALLOW and task.status in BUSY:  # a dry run: does the slot spawn a run?
            try:
                spawned = copy.deepcopy(task).on_due(self._clock.now(), starting_deadline_s=deadline, actor=self._actor)
            except IllegalTransition:
                return Acted()  # another replica (or a user's change) got there first
        send: list[Task] = []
        if spawned is not None:
            # ``overlap: allow``. The spawned run exists before its parent moves past the slot, so a crash in
            # between loses nothing (the next pass spawns the same id, and the store refuses the duplicate);
            # its creator sends it. The parent's commit then only moves past that slot, whatever state a
            # re-read finds it in: never a second run of the same slot.
            slot = spawned.run_slot
            assert slot is not None
            tracing.note_context(spawned)  # the spawned run's trace is the promotion's
            if self._create(spawned):
                send.append(spawned.committed())

            def change(t: Task) -> None:
                t.slot_spawned(slot, spawned.id, self._clock.now(), starting_deadline_s=deadline, actor=self._actor)
                recorded[:] = t.pending_events

        else:

            def change(t: Task) -> None:
                at = staged_at or self._clock.now()
                if t.on_due(at, starting_deadline_s=deadline, actor=self._actor) is not None:
                    # Re-read after a lost race, the task now wants a run spawned: the next pass does that.
                    raise IllegalTransition("the task changed; its slot is decided on the next pass")
                tracing.note_context(t)  # what it queues continues the promotion's trace
                recorded[:] = t.pending_events

        try:
            task = mutate(self._store, task, change)
        except IllegalTransition:
            return Acted(send=send)
        if task.status is Status.QUEUED and _queued(recorded):
            send.append(task)
        # The task's next wake-up (a repeating task's next slot) may fall within the look-ahead.
        return Acted(send=send, events=recorded, wake_at=task.wake_at, send_at=staged_at if not spawned else None)

    def _create(self, task: Task) -> bool:
        try:
            self._store.create(task)
        except VersionConflict:
            return False  # already spawned by another pass or replica
        return True

    def _send(self, tasks: Iterable[Task]) -> None:
        batch = list(tasks)
        if not batch:
            return
        try:
            self._queue.send_batch(batch)
        except QueueUnavailable:
            # Durable and queued: the reaper re-sends tasks left queued (docs/ARCHITECTURE.md).
            log.warning("enqueue of %d tasks failed; the reaper will re-send them", len(batch), exc_info=True)

    def close(self) -> None:
        """Stop the worker threads, after sending what was staged (each at its time)."""
        self._parts_pool.shutdown(wait=True)
        self._acts_pool.shutdown(wait=True)
        self._outbox.close()

    def staged(self) -> int:
        """Tasks committed ahead and waiting for their time to be sent."""
        return self._outbox.pending()


def _queued(events: list[Event]) -> bool:
    return any(e.type is EventType.QUEUED for e in events)


def _count(events: list[Event], done: Pass) -> None:
    for event in events:
        done.events[event.type.value] += 1
        SCHEDULER_ACTIONS.labels(event.type.value).inc()
        if event.type is EventType.RUN_SKIPPED:
            SLOTS_SKIPPED.labels(str(event.data.get("reason"))).inc(int(event.data.get("count", 1)))


def promote_due(
    store: TaskStore,
    queue: TaskQueue,
    clock: Clock,
    *,
    since: datetime,
    starting_deadline_s: float = 3600,
    actor: str = "scheduler",
) -> int:
    """One pass of a throwaway :class:`Promoter` over what is due from ``since``; how many runs and retries were
    queued."""
    promoter = Promoter(store, queue, clock, starting_deadline_s=starting_deadline_s, actor=actor)
    try:
        return promoter.run(since).queued
    finally:
        promoter.close()
