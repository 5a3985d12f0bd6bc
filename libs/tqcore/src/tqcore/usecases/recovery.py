"""The reaper's use cases: put work that fell through the cracks back on track.

- a task left ``queued`` with no claim past its deadline is sent again (a lost or failed enqueue);
- a lease that ran out (its executor died or stalled) is reclaimed: the attempt is ``lost``, then the
  task is retried after its backoff or dead-lettered;
- a message SQS moved to a dead-letter queue is settled: an undecodable one fails its task; a decodable one
  (it may only have bounced through a backlog or an outage) sends the task again, up to three times, then
  fails it.

Every change is a conditional commit, so several reapers can run at once without doing anything twice.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from tqcore.domain.errors import IllegalTransition, TaskNotFound, TqError, VersionConflict
from tqcore.domain.model import Priority, Status
from tqcore.domain.state import DEFAULT_POOL
from tqcore.domain.task import Task
from tqcore.errors import QueueUnavailable
from tqcore.ports import Clock, DeadLetter, DeadLetterInbox, LeaseRecord, TaskQueue, TaskStore
from tqcore.usecases.service import mutate

log = logging.getLogger(__name__)
T = TypeVar("T")

#: A dead letter that stands for a failed task is looked at again after this long (the SQS maximum).
KEEP_DEAD_LETTER_S = 12 * 3600
#: Dead-letter batches read per priority and pass, so one pass stays bounded.
DEAD_LETTER_BATCHES = 5
#: Tasks a pass sends in one call (SQS's ``SendMessageBatch`` maximum).
SEND_BATCH = 10


def hand_on(queue: TaskQueue, task: Task) -> None:
    """After a commit: a task now ``queued`` goes to its queue, one now ``failed`` to the dead-letter queue.

    A failed send is logged, not raised: the reaper re-sends queued tasks, and the ``dlq`` index, not the
    dead-letter message, is the record of a failed task.
    """
    try:
        if task.status is Status.QUEUED:
            queue.send(task)
        elif task.status is Status.FAILED:
            queue.dead_letter(task)
    except (QueueUnavailable, TqError):
        log.warning("could not hand the task on; the reaper will", extra={"task_id": task.id}, exc_info=True)


class HandOn:
    """:func:`hand_on` for the tasks of a pass: queued tasks go out ten at a time in one ``SendMessageBatch``
    (a reaper pass is one thread, so the queue's sharing of concurrent sends never applies to it)."""

    def __init__(self, queue: TaskQueue) -> None:
        self._queue = queue
        self._queued: list[Task] = []

    def __enter__(self) -> HandOn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()

    def add(self, task: Task) -> None:
        """Hand on one committed task (sent with the next nine, or at the end of the pass)."""
        if task.status is not Status.QUEUED:
            hand_on(self._queue, task)
            return
        self._queued.append(task)
        if len(self._queued) >= SEND_BATCH:
            self.flush()

    def flush(self) -> None:
        """Send what is waiting; a failed send is logged (the reaper re-sends queued tasks next time)."""
        tasks, self._queued = self._queued, []
        if not tasks:
            return
        try:
            self._queue.send_batch(tasks)
        except (QueueUnavailable, TqError):
            log.warning("could not send %d tasks; the reaper will", len(tasks), exc_info=True)


def resend_stuck(store: TaskStore, queue: TaskQueue, clock: Clock) -> int:
    """Send again every task still ``queued`` past its re-send deadline; how many were re-sent.

    This is how an enqueue that failed after the submit committed still runs (re-send, not an outbox):
    the submit wrote the task ``queued`` with a deadline in the ``reap`` index, and only a claim clears it.
    One conditional commit per task and no retry on a lost race, so of several reapers only one re-sends.
    """
    sent = 0
    with HandOn(queue) as out:
        for task in _each(store.unclaimed(clock.now()), "unclaimed tasks"):
            try:
                task.resend(clock.now())
                store.commit(task)
            except (IllegalTransition, VersionConflict):
                continue  # claimed, or re-sent by another reaper, meanwhile
            out.add(task.committed())
            sent += 1
    return sent


def reclaim_expired_leases(
    store: TaskStore, queue: TaskQueue, clock: Clock, *, jitter: Callable[[], float] = random.random
) -> int:
    """Reclaim every lease that ran out; how many attempts were marked ``lost``."""
    reclaimed = 0
    with HandOn(queue) as out:
        for lease in _each(store.lease_expired(clock.now()), "expired leases"):
            if _reclaim(store, lease, clock, jitter, out):
                reclaimed += 1
    return reclaimed


def _reclaim(store: TaskStore, lease: LeaseRecord, clock: Clock, jitter: Callable[[], float], out: HandOn) -> bool:
    now = clock.now()  # per lease: a retry's next_run_at must never fall behind the scheduler's mark
    try:
        task = store.get(lease.task_id)
    except TaskNotFound:
        return False
    if task.status is not Status.RUNNING or task.claim_seq != lease.claim_seq:
        log.warning("lease of a finished claim left behind", extra={"task_id": lease.task_id})
        return False
    try:
        task.expire_lease(now, jitter=jitter())
        # Only while the lease is still expired: a heartbeat that lands first keeps the attempt.
        store.commit(task, lease_expired_before=now)
    except (IllegalTransition, VersionConflict):
        return False  # extended, finished or changed meanwhile: look again next pass
    log.info("reclaimed the lease of %s", lease.worker, extra={"task_id": task.id})
    out.add(task.committed())
    return True


def settle_dead_letters(
    store: TaskStore,
    queue: TaskQueue,
    inbox: DeadLetterInbox,
    clock: Clock,
    *,
    strikes_allowed: int = 3,
    pools: Sequence[str] = (DEFAULT_POOL,),
) -> int:
    """Settle what SQS moved to the dead-letter queues of ``pools``; how many letters were settled."""
    settled = 0
    for pool, priority in itertools.product(pools, Priority):
        for _ in range(DEAD_LETTER_BATCHES):
            letters = inbox.receive(priority, hide_s=KEEP_DEAD_LETTER_S, pool=pool)
            for letter in letters:
                try:
                    settled += _settle(store, queue, inbox, clock, letter, strikes_allowed)
                except TqError as error:  # the store is unavailable: the letter comes back later
                    log.warning("could not settle a dead letter: %s", error, extra={"task_id": letter.task_id})
            if len(letters) < 10:
                break
    return settled


def _settle(
    store: TaskStore, queue: TaskQueue, inbox: DeadLetterInbox, clock: Clock, letter: DeadLetter, strikes_allowed: int
) -> int:
    if letter.task_id is None:
        log.error("a dead letter names no task; kept for inspection")
        return 0
    try:
        task = store.get(letter.task_id)
    except TaskNotFound:
        inbox.discard(letter)
        return 0
    if letter.record:
        # Our own record of a dead-lettered task: it stays while the task is failed.
        if task.status is not Status.FAILED:
            inbox.discard(letter)
        return 0
    sent = letter.dispatch
    attempt, run, enqueue = (sent.attempt, sent.run, sent.enqueue) if sent is not None else (None, None, None)
    try:
        # On a lost race (another reaper re-sent the task meanwhile) the domain decides again on the current
        # task: discarding the letter then would leave a queued task with no message at all, every re-send of
        # it dropped by SQS as a duplicate for five minutes.
        done = mutate(
            store,
            task,
            lambda t: t.poisoned(
                attempt, letter.receives, clock.now(), strikes_allowed=strikes_allowed, run=run, enqueue=enqueue
            ),
        )
    except (IllegalTransition, VersionConflict):
        # Not the task's live message (an old attempt's, or the task moved on): nothing to settle.
        inbox.discard(letter)
        return 0
    inbox.discard(letter)
    log.warning(
        "a dead-lettered message %s its task",
        "failed" if done.status is Status.FAILED else "re-sent",
        extra={"task_id": done.id},
    )
    hand_on(queue, done)
    return 1


def _each(items: Iterable[T], what: str) -> Iterator[T]:
    """Walk ``items`` one at a time; a walk that breaks off is logged, and what was found so far is kept."""
    found: list[T] = []
    try:
        found.extend(items)
    except TqError as error:
        log.warning("could not walk %s: %s", what, error)
    yield from found
