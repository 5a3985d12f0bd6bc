"""The read-side and dead-letter use cases on the in-memory fakes: who sees what, paging, redrive."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import pytest

from tqcore.adapters.dynamodb import keys
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import (
    Forbidden,
    GroupRequired,
    IllegalTransition,
    InvalidCursor,
    TaskNotFound,
)
from tqcore.domain.model import ErrorInfo, EventType, Status
from tqcore.domain.requests import DeadLetterQuery, PageQuery, RedriveDeadLetters
from tqcore.domain.task import Task
from tqcore.queries import encode_cursor
from tqcore.testing import FixedClock, InMemoryTaskQueries, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.management import DeadLetters, TaskHistory
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
BOB = Principal("bob", frozenset({"team-b"}))
CAROL = Principal("carol", frozenset({"team-a", "team-b"}))
ADMIN = Principal("admin", frozenset(), admin=True)
WORKER = "host-a:1"
BOOM = ErrorInfo("ValueError", "boom")

Make = Callable[..., Task]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store() -> InMemoryTaskStore:
    return InMemoryTaskStore()


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def history(store: InMemoryTaskStore) -> TaskHistory:
    return TaskHistory(store)


@pytest.fixture
def dead_letters(store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock) -> DeadLetters:
    return DeadLetters(store, InMemoryTaskQueries(store), queue, clock)


@pytest.fixture
def make(store: InMemoryTaskStore, clock: FixedClock) -> Make:
    """Makes tasks ``t-1``, ``t-2``…: queued, or run through ``attempts`` failed attempts (``failed`` when the
    budget of ``max_retries`` is spent); the clock moves a second per step, so later tasks finish later."""
    ids = (f"t-{n}" for n in itertools.count(1))

    def make_task(group: str = "team-a", *, attempts: int = 0, max_retries: int = 0) -> Task:
        cmd = SubmitTask.model_validate({"type": "echo", "group": group, "retry": {"max_retries": max_retries}})
        task = Task.submit(
            task_id=next(ids),
            owner="alice",
            now=clock.now(),
            submitted=cmd.model_dump(mode="json"),
            **cmd.task_fields(),
        )
        store.create(task)
        task = task.committed()
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                task = mutate(store, task, lambda t: t.promote(t.next_run_at or clock.now()))
            clock.advance(1)
            task = mutate(store, task, lambda t, n=attempt: t.claim(n, WORKER, clock.now(), 30))
            clock.advance(1)
            task = mutate(store, task, lambda t, n=attempt: t.fail(n, WORKER, BOOM, clock.now(), jitter=0.0))
        return task

    return make_task


def dead(make: Make, group: str = "team-a") -> Task:
    task = make(group, attempts=1)
    assert task.status is Status.FAILED
    return task


# ------------------------------------------------------------------------------------------------- events
def test_events_are_the_tasks_history_oldest_first(history: TaskHistory, make: Make) -> None:
    task = dead(make)
    events = history.events(task.id, ALICE).items
    assert [e.seq for e in events] == list(range(1, task.version + 1))
    assert [e.type for e in events][:3] == [EventType.SUBMITTED, EventType.QUEUED, EventType.CLAIMED]
    assert events[-1].type is EventType.DEAD_LETTERED


@pytest.mark.parametrize(
    ("principal", "visible"),
    [(ALICE, {"team-a"}), (BOB, {"team-b"}), (CAROL, {"team-a", "team-b"}), (ADMIN, {"team-a", "team-b"})],
)
def test_events_and_runs_of_a_task_outside_the_callers_groups_are_not_found(
    history: TaskHistory, make: Make, principal: Principal, visible: set[str]
) -> None:
    for group in ("team-a", "team-b"):
        task = dead(make, group)
        if group in visible:
            assert history.events(task.id, principal).items
            assert history.runs(task.id, principal, PageQuery()).items
        else:
            with pytest.raises(TaskNotFound):
                history.events(task.id, principal)
            with pytest.raises(TaskNotFound):
                history.runs(task.id, principal, PageQuery())


@pytest.mark.parametrize("task_id", ["no-such-task", "a b", "x" * 100])
def test_unknown_and_impossible_ids_are_not_found(history: TaskHistory, task_id: str) -> None:
    with pytest.raises(TaskNotFound):
        history.events(task_id, ADMIN)
    with pytest.raises(TaskNotFound):
        history.runs(task_id, ADMIN, PageQuery())


# --------------------------------------------------------------------------------------------------- runs
def test_runs_page_through_every_attempt_newest_first(history: TaskHistory, make: Make) -> None:
    # Given a task that failed five attempts
    task = make(attempts=5, max_retries=4)
    assert task.status is Status.FAILED
    # When its runs are read two at a time
    attempts: list[int] = []
    cursor: str | None = None
    for _ in range(10):
        page = history.runs(task.id, ALICE, PageQuery(limit=2, cursor=cursor))
        attempts += [run.attempt for run in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    # Then every attempt comes once, newest first, in three pages
    assert attempts == [5, 4, 3, 2, 1]


def test_a_queued_task_has_no_runs_yet(history: TaskHistory, make: Make) -> None:
    page = history.runs(make().id, ALICE, PageQuery())
    assert (page.items, page.next_cursor) == ([], None)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "bm90LWEtY3Vyc29y",
        encode_cursor("runs", "x1"),
        encode_cursor("runs", "²"),
        encode_cursor("dlq", "5"),
    ],
)
def test_a_cursor_not_from_the_runs_listing_is_refused(history: TaskHistory, make: Make, cursor: str) -> None:
    task = dead(make)
    with pytest.raises(InvalidCursor):
        history.runs(task.id, ALICE, PageQuery(cursor=cursor))


# --------------------------------------------------------------------------------------------- dlq: list
def test_the_dlq_lists_only_failed_tasks_of_the_group_newest_first(dead_letters: DeadLetters, make: Make) -> None:
    first, _queued, second, _other = dead(make), make(), dead(make), dead(make, "team-b")
    page = dead_letters.page(DeadLetterQuery(group="team-a"), ALICE)
    assert ([t.id for t in page.items], page.next_cursor) == ([second.id, first.id], None)


def test_without_a_group_the_dlq_lists_the_callers_groups(dead_letters: DeadLetters, make: Make) -> None:
    a, b = dead(make, "team-a"), dead(make, "team-b")
    assert [t.id for t in dead_letters.page(DeadLetterQuery(), ALICE).items] == [a.id]
    assert [t.id for t in dead_letters.page(DeadLetterQuery(), BOB).items] == [b.id]
    assert [t.id for t in dead_letters.page(DeadLetterQuery(), CAROL).items] == [b.id, a.id]


def test_a_merged_dlq_pages_through_every_group_once_newest_first(dead_letters: DeadLetters, make: Make) -> None:
    # Given dead letters interleaved across carol's two groups
    tasks = [dead(make, group) for group in ("team-a", "team-b", "team-b", "team-a", "team-b")]
    # When carol pages without naming a group, two at a time
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        page = dead_letters.page(DeadLetterQuery(limit=2, cursor=cursor), CAROL)
        seen += [t.id for t in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    # Then she sees each once, newest first, with no empty last page
    assert seen == [t.id for t in reversed(tasks)]


def test_the_dlq_of_a_group_the_caller_is_not_in_is_forbidden(dead_letters: DeadLetters, make: Make) -> None:
    dead(make, "team-b")
    with pytest.raises(Forbidden):
        dead_letters.page(DeadLetterQuery(group="team-b"), ALICE)
    assert dead_letters.page(DeadLetterQuery(group="team-b"), CAROL).items


def test_an_admin_must_name_a_group_and_may_name_any(dead_letters: DeadLetters, make: Make) -> None:
    task = dead(make, "team-z")
    with pytest.raises(GroupRequired):
        dead_letters.page(DeadLetterQuery(), ADMIN)
    assert [t.id for t in dead_letters.page(DeadLetterQuery(group="team-z"), ADMIN).items] == [task.id]


@pytest.mark.parametrize("principal", [ALICE, CAROL])
def test_a_bad_dlq_cursor_is_refused(dead_letters: DeadLetters, make: Make, principal: Principal) -> None:
    dead(make)
    for cursor in ("%%%", encode_cursor("runs", "3"), encode_cursor("dlq", "not-a-position")):
        with pytest.raises(InvalidCursor):
            dead_letters.page(DeadLetterQuery(cursor=cursor), principal)


def test_the_cursor_position_is_the_dlq_index_sort_key(make: Make, store: InMemoryTaskStore) -> None:
    # The merged listing relies on this: its cursor must mean the same as the adapter's.
    task = dead(make)
    attrs = keys.index_attributes(task, due_shards=1, reap_shards=1, resend_after_s=30)
    (listed,) = InMemoryTaskQueries(store).listed([task.id])
    assert attrs["dlq_sk"] == listed.dlq_position


# ------------------------------------------------------------------------------------- redrive one task
def test_redriving_a_failed_task_queues_it_with_a_fresh_budget(
    dead_letters: DeadLetters, make: Make, queue: RecordingQueue, store: InMemoryTaskStore
) -> None:
    failed = dead(make)
    task = dead_letters.redrive_task(failed.id, CAROL)
    assert (task.status, task.attempts, task.version) == (Status.QUEUED, 0, failed.version + 2)
    assert [e.type for e in store.events(task.id)][-2:] == [EventType.REDRIVEN, EventType.QUEUED]
    assert store.events(task.id)[-1].actor == "carol"
    assert [(t.id, t.version) for t in queue.sent] == [(task.id, task.version)]
    assert dead_letters.page(DeadLetterQuery(group="team-a"), ALICE).items == []


def test_redriving_a_task_that_is_not_failed_is_illegal(
    dead_letters: DeadLetters, make: Make, queue: RecordingQueue
) -> None:
    task = make()
    with pytest.raises(IllegalTransition):
        dead_letters.redrive_task(task.id, ALICE)
    assert queue.sent == []


def test_redriving_a_task_outside_the_callers_groups_is_not_found(dead_letters: DeadLetters, make: Make) -> None:
    task = dead(make, "team-b")
    with pytest.raises(TaskNotFound):
        dead_letters.redrive_task(task.id, ALICE)


def test_a_redrive_whose_send_fails_still_succeeds(
    dead_letters: DeadLetters, make: Make, queue: RecordingQueue, store: InMemoryTaskStore
) -> None:
    queue.fail_next = 1
    task = dead_letters.redrive_task(dead(make).id, ALICE)
    assert store.get(task.id).status is Status.QUEUED  # durable: the reaper re-sends it
    assert queue.sent == []


# ------------------------------------------------------------------------------------ redrive the dlq
def redrive(dead_letters: DeadLetters, principal: Principal = ALICE, **body: object) -> list[str]:
    return dead_letters.redrive(RedriveDeadLetters.model_validate({"group": "team-a", **body}), principal).ids


def test_a_dry_run_lists_the_newest_and_changes_nothing(
    dead_letters: DeadLetters, make: Make, queue: RecordingQueue, store: InMemoryTaskStore
) -> None:
    tasks = [dead(make) for _ in range(3)]
    assert redrive(dead_letters, dry_run=True, limit=2) == [tasks[2].id, tasks[1].id]
    assert [store.get(t.id) for t in tasks] == tasks
    assert queue.sent == []


def test_without_ids_the_newest_limit_are_redriven(
    dead_letters: DeadLetters, make: Make, queue: RecordingQueue, store: InMemoryTaskStore
) -> None:
    tasks = [dead(make) for _ in range(3)]
    assert redrive(dead_letters, limit=2) == [tasks[2].id, tasks[1].id]
    assert [store.get(t.id).status for t in tasks] == [Status.FAILED, Status.QUEUED, Status.QUEUED]
    assert sorted(t.id for t in queue.sent) == sorted([tasks[1].id, tasks[2].id])


def test_given_ids_only_failed_tasks_of_the_group_are_redriven(
    dead_letters: DeadLetters, make: Make, store: InMemoryTaskStore
) -> None:
    # Given a dead letter of team-a, one of team-b, a queued task and ids that name nothing
    mine, theirs, queued = dead(make), dead(make, "team-b"), make()
    ids = [theirs.id, mine.id, queued.id, "no-such-task", "not an id", mine.id]
    # When carol (in both groups) redrives them as team-a's
    done = redrive(dead_letters, CAROL, ids=ids)
    # Then only team-a's dead letter went, once; the rest were skipped, not errors
    assert done == [mine.id]
    assert store.get(theirs.id).status is Status.FAILED
    assert store.get(queued.id).version == queued.version


def test_a_dry_run_with_ids_lists_what_would_go(
    dead_letters: DeadLetters, make: Make, store: InMemoryTaskStore
) -> None:
    mine, theirs = dead(make), dead(make, "team-b")
    assert redrive(dead_letters, CAROL, ids=[mine.id, theirs.id], dry_run=True) == [mine.id]
    assert store.get(mine.id) == mine


def test_redriving_another_groups_dlq_is_forbidden(dead_letters: DeadLetters, make: Make) -> None:
    dead(make)
    with pytest.raises(Forbidden):
        redrive(dead_letters, BOB)
    assert redrive(dead_letters, ADMIN, dry_run=True)


class LaggingQueries:
    """An index that has not caught up with the table: it lists the tasks it was given."""

    def __init__(self, tasks: list[Task]) -> None:
        self._tasks = tasks

    def dead_letter_positions(self, group: str, before: str | None = None) -> Iterator[tuple[str, str]]:
        yield from ((f"{t.finished_at}#{t.id}", t.id) for t in self._tasks)

    def tasks(self, ids: Sequence[str]) -> list[Task]:
        return [t for t in self._tasks if t.id in ids]


def test_a_dead_letter_redriven_meanwhile_is_skipped(
    make: Make, store: InMemoryTaskStore, queue: RecordingQueue, clock: FixedClock
) -> None:
    # Given a dead letter redriven already, and an index still listing it as failed
    task = dead(make)
    lagging = DeadLetters(store, LaggingQueries([store.get(task.id)]), queue, clock)
    lagging.redrive_task(task.id, ALICE)
    # When the group's dead letters are redriven from that listing
    done = lagging.redrive(RedriveDeadLetters(group="team-a"), ALICE)
    # Then the task is skipped (the domain refuses to redrive a queued task) and was queued once
    assert done.ids == []
    assert len(queue.sent) == 1
    assert [e.type for e in store.events(task.id)].count(EventType.REDRIVEN) == 1
