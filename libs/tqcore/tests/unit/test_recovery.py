"""The reaper's use cases on the in-memory fakes: re-sends, reclaims and dead letters, with races."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Priority, Status
from tqcore.domain.task import Task
from tqcore.ports import DeadLetter
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.recovery import resend_stuck, settle_dead_letters
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))


class Inbox:
    """Dead letters handed out once, and what was discarded."""

    def __init__(self, letters: list[DeadLetter]) -> None:
        self.letters = letters
        self.discarded: list[DeadLetter] = []

    def receive(self, priority: Priority, *, hide_s: int, pool: str = "default") -> list[DeadLetter]:
        mine = [letter for letter in self.letters if (letter.priority, letter.pool) == (priority, pool)]
        self.letters = [letter for letter in self.letters if letter not in mine]
        return mine

    def discard(self, letter: DeadLetter) -> None:
        self.discarded.append(letter)


@pytest.fixture
def env() -> tuple[Tasks, InMemoryTaskStore, RecordingQueue, FixedClock]:
    store, queue, clock = InMemoryTaskStore(resend_after_s=30), RecordingQueue(), FixedClock()
    ids = (f"t-{n}" for n in itertools.count(1))
    return Tasks(store, queue, Catalog(InMemoryRegistry(["echo"])), clock, lambda: next(ids)), store, queue, clock


def letter(task_id: str, dispatch: Dispatch | None, receives: int = 5, record: bool = False) -> DeadLetter:
    return DeadLetter(Priority.NORMAL, f"r-{task_id}", task_id, receives, dispatch, record)


def test_of_two_reapers_racing_only_one_resends(env: tuple) -> None:
    tasks, store, queue, clock = env
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a"), ALICE).task.id
    clock.advance(31)
    # Given two reapers that both found the task unclaimed (they read the same version)
    slow_view = store.get(task_id)
    assert resend_stuck(store, queue, clock) == 1
    # When the second commits its re-send on the stale view, it is refused and sends nothing
    slow_view.resend(clock.now())
    with pytest.raises(Exception, match="changed"):
        store.commit(slow_view)
    assert resend_stuck(store, queue, clock) == 0
    assert len(queue.sent) == 2  # the submit's send and one re-send


def test_an_undecodable_dead_letter_fails_its_queued_task_at_once(env: tuple) -> None:
    tasks, store, queue, clock = env
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a"), ALICE).task.id
    inbox = Inbox([letter(task_id, None)])
    assert settle_dead_letters(store, queue, inbox, clock) == 1
    task = store.get(task_id)
    assert task.status is Status.FAILED
    assert task.last_error is not None
    assert task.last_error.type == "PoisonMessage"
    assert [t.id for t in queue.dead] == [task_id]  # its record goes to the DLQ
    assert len(inbox.discarded) == 1


def test_a_decodable_dead_letter_sends_the_task_again_twice_then_fails_it(env: tuple) -> None:
    tasks, store, queue, clock = env
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a"), ALICE).task.id
    for strike in (1, 2):
        dispatch = Dispatch.of(store.get(task_id))
        assert settle_dead_letters(store, queue, Inbox([letter(task_id, dispatch)]), clock) == 1
        assert store.get(task_id).status is Status.QUEUED, strike
        assert queue.sent[-1].version == store.get(task_id).version  # a fresh message was sent
    assert settle_dead_letters(store, queue, Inbox([letter(task_id, Dispatch.of(store.get(task_id)))]), clock) == 1
    assert store.get(task_id).status is Status.FAILED


class ResentMeanwhile(InMemoryTaskStore):
    """Another reaper re-sends ``task_id`` just after this one read it (the same version, the same message)."""

    def __init__(self, clock: FixedClock) -> None:
        super().__init__(resend_after_s=30)
        self.clock, self.task_id = clock, ""

    def get(self, task_id: str) -> Task:
        task = super().get(task_id)
        if task_id == self.task_id:
            self.task_id = ""
            other = super().get(task_id)
            other.resend(self.clock.now())
            self.commit(other)
        return task


def test_a_dead_letter_of_a_task_resent_meanwhile_still_sends_it_again_with_a_fresh_message() -> None:
    # Discarding the letter on that lost race would leave the task queued with no message at all: SQS drops
    # every re-send of the same message as a duplicate for five minutes, so the task would wait that long.
    clock = FixedClock()
    store, queue = ResentMeanwhile(clock), RecordingQueue()
    tasks = Tasks(store, queue, Catalog(InMemoryRegistry(["echo"])), clock, lambda: "t-1")
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a"), ALICE).task.id
    sent = Dispatch.of(store.get(task_id))
    clock.advance(31)
    store.task_id = task_id
    assert settle_dead_letters(store, queue, Inbox([letter(task_id, sent)]), clock) == 1
    task = store.get(task_id)
    assert (task.status, task.poison_strikes) == (Status.QUEUED, 1)
    assert Dispatch.of(queue.sent[-1]).deduplication_id != sent.deduplication_id


def test_a_dead_letter_of_a_task_that_moved_on_changes_nothing(env: tuple) -> None:
    tasks, store, queue, clock = env
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a"), ALICE).task.id
    stale = Dispatch.of(store.get(task_id))
    running = Attempts(store, queue, clock, worker="h:1", lease_s=30).claim(stale)
    assert running is not None
    inbox = Inbox([letter(task_id, stale), letter(task_id, None)])
    assert settle_dead_letters(store, queue, inbox, clock) == 0
    assert store.get(task_id).status is Status.RUNNING  # a running task is never failed by a letter
    assert len(inbox.discarded) == 2


def test_dead_letter_records_stay_while_their_task_is_failed_and_go_after_a_redrive(env: tuple) -> None:
    tasks, store, queue, clock = env
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a"), ALICE).task.id
    settle_dead_letters(store, queue, Inbox([letter(task_id, None)]), clock)
    record = letter(task_id, Dispatch.of(store.get(task_id)), record=True)
    inbox = Inbox([record])
    settle_dead_letters(store, queue, inbox, clock)
    assert inbox.discarded == []
    failed = store.get(task_id)
    failed.redrive("alice", clock.now() + timedelta(seconds=1))
    store.commit(failed)
    inbox = Inbox([record])
    settle_dead_letters(store, queue, inbox, clock)
    assert inbox.discarded == [record]


def test_a_dead_letter_of_a_run_withdrawn_by_a_pause_leaves_the_run_queued_after_the_resume(env: tuple) -> None:
    tasks, store, queue, clock = env
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a", schedule={"every_s": 10}), ALICE).task.id
    t0 = store.get(task_id).created_at
    first = Attempts(store, queue, clock, worker="h:1", lease_s=30).claim(Dispatch.of(store.get(task_id)))
    assert first is not None
    task = store.get(task_id)
    task.succeed(1, "h:1", None, t0 + timedelta(seconds=1), claim_seq=task.claim_seq)
    # Given the run of the slot at t0+10s staged (its message on the way), withdrawn by a pause, the task resumed
    task.on_due(t0 + timedelta(seconds=10), starting_deadline_s=3600)
    withdrawn = Dispatch.of(task)
    task.pause("alice", t0 + timedelta(seconds=7))
    task.resume("alice", t0 + timedelta(seconds=12))
    # and the run of its next slot (t0+20s) staged: the same run and attempt numbers, another enqueue
    task.on_due(t0 + timedelta(seconds=20), starting_deadline_s=3600)
    store.commit(task)
    live = store.get(task_id)
    assert (withdrawn.run, withdrawn.attempt) == (live.run_no, live.attempts + 1)
    # When SQS dead-letters the withdrawn message and the reaper settles it at t0+16s
    clock.advance(16)
    inbox = Inbox([letter(task_id, withdrawn)])
    assert settle_dead_letters(store, queue, inbox, clock) == 0
    # Then the letter is discarded and the queued run is untouched: no strike, no fresh message
    assert store.get(task_id).version == live.version
    assert store.get(task_id).poison_strikes == 0
    assert len(inbox.discarded) == 1
