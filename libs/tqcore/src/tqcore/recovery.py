"""The reaper's use cases: put work that fell through the cracks back on track.

- a task left ``queued`` with no claim past its deadline is sent again (a lost or failed enqueue);
- a lease that ran out (its executor died or stalled) is reclaimed: the attempt is ``lost``, then the
  task is retried after its backoff or dead-lettered;
- a message SQS moved to a dead-letter queue (undecodable, or failing again and again) fails its task.

Every change is a conditional commit, so several reapers can run at once without doing anything twice.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

from tqcore.domain.errors import IllegalTransition, QueueUnavailable, TaskNotFound, VersionConflict
from tqcore.domain.model import Priority, Status
from tqcore.domain.task import Task
from tqcore.ports import Clock, DeadLetter, DeadLetterInbox, TaskQueue, TaskStore
from tqcore.service import mutate

log = logging.getLogger(__name__)

#: A dead letter that stands for a failed task is looked at again after this long (the SQS maximum).
KEEP_DEAD_LETTER_S = 12 * 3600
#: Dead-letter batches read per priority and pass, so one pass stays bounded.
DEAD_LETTER_BATCHES = 5


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
    except QueueUnavailable:
        log.warning("could not hand the task on; the reaper will", extra={"task_id": task.id}, exc_info=True)


def resend_stuck(store: TaskStore, queue: TaskQueue, clock: Clock, *, shards: int) -> int:
    """Send again every task still ``queued`` past its re-send deadline; how many were re-sent.

    This is how an enqueue that failed after the submit committed still runs (re-send, not an outbox):
    the submit wrote the task ``queued`` with a deadline in the ``reap`` index, and only a claim clears it.
    """
    now = clock.now()
    sent = 0
    for shard in range(shards):
        for task in list(store.unclaimed(shard, now)):
            try:
                task = mutate(store, task, lambda t: t.resend(now))
            except IllegalTransition:
                continue  # claimed meanwhile
            queue.send(task)
            sent += 1
    return sent


def reclaim_expired_leases(
    store: TaskStore, queue: TaskQueue, clock: Clock, *, shards: int, jitter: Callable[[], float] = random.random
) -> int:
    """Reclaim every lease that ran out; how many attempts were marked ``lost``."""
    now = clock.now()
    reclaimed = 0
    for shard in range(shards):
        for lease in list(store.lease_expired(shard, now)):
            try:
                task = store.get(lease.task_id)
            except TaskNotFound:
                continue
            if task.status is not Status.RUNNING or task.claim_seq != lease.claim_seq:
                log.warning("lease of a finished claim left behind", extra={"task_id": lease.task_id})
                continue
            try:
                task.expire_lease(now, jitter=jitter())
                # Only while the lease is still expired: a heartbeat that lands first keeps the attempt.
                store.commit(task, lease_expired_before=now)
            except (IllegalTransition, VersionConflict):
                continue  # extended, finished or changed meanwhile: look again next pass
            log.info("reclaimed the lease of %s", lease.worker, extra={"task_id": task.id})
            hand_on(queue, task.committed())
            reclaimed += 1
    return reclaimed


def settle_dead_letters(store: TaskStore, inbox: DeadLetterInbox, clock: Clock) -> int:
    """Fail the tasks whose current message SQS dead-lettered; drop dead letters that no longer matter."""
    failed = 0
    for priority in Priority:
        for _ in range(DEAD_LETTER_BATCHES):
            letters = inbox.receive(priority, hide_s=KEEP_DEAD_LETTER_S)
            for letter in letters:
                failed += _settle(store, inbox, clock, letter)
            if len(letters) < 10:
                break
    return failed


def _settle(store: TaskStore, inbox: DeadLetterInbox, clock: Clock, letter: DeadLetter) -> int:
    if letter.task_id is None:
        log.error("a dead letter names no task; kept for inspection")
        return 0
    try:
        task = store.get(letter.task_id)
    except TaskNotFound:
        inbox.discard(letter)
        return 0
    if task.status is Status.FAILED:
        return 0  # the record of a dead-lettered task: it stays
    if task.status.is_terminal or not _is_current(task, letter):
        inbox.discard(letter)  # redriven, finished, or an old enqueue's message: nothing to settle
        return 0
    now = clock.now()
    try:
        mutate(store, task, lambda t: t.dead_letter_poison(letter.receives, now))
    except IllegalTransition:
        return 0
    log.warning("failed a task whose message was dead-lettered by SQS", extra={"task_id": task.id})
    return 1


def _is_current(task: Task, letter: DeadLetter) -> bool:
    """Whether the dead letter is the task's live message (an undecodable one counts while it waits)."""
    if letter.dispatch is None:
        return task.status is Status.QUEUED
    return task.status is Status.QUEUED and letter.dispatch.attempt == task.attempts + 1
