"""Bulk cancel (``POST /v1/tasks:cancel``) over the in-memory fakes: which tasks it picks, what each becomes."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import Forbidden
from tqcore.domain.model import EventType, Status
from tqcore.domain.requests import CancelTasks
from tqcore.domain.task import Task
from tqcore.testing import FixedClock, InMemoryTaskQueries, InMemoryTaskStore
from tqcore.usecases.bulk import BulkCancel
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
BOB = Principal("bob", frozenset({"team-b"}))
CAROL = Principal("carol", frozenset({"team-a", "team-b"}))
ADMIN = Principal("admin", frozenset(), admin=True)
WORKER = "host-a:1"

Make = Callable[..., Task]


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store() -> InMemoryTaskStore:
    return InMemoryTaskStore()


@pytest.fixture
def bulk(store: InMemoryTaskStore, clock: FixedClock) -> BulkCancel:
    return BulkCancel(store, InMemoryTaskQueries(store), clock)


@pytest.fixture
def make(store: InMemoryTaskStore, clock: FixedClock) -> Make:
    """Makes tasks ``t-01``, ``t-02``… (ids sort by age, as ULIDs do): ``queued``, ``scheduled``, ``running`` or
    ``succeeded``."""
    ids = (f"t-{n:02}" for n in itertools.count(1))

    def make_task(group: str = "team-a", status: Status = Status.QUEUED, type_: str = "echo") -> Task:
        body: dict[str, object] = {"type": type_, "group": group}
        if status is Status.SCHEDULED:
            body["schedule"] = {"at": "2999-01-01T00:00:00Z"}
        cmd = SubmitTask.model_validate(body)
        task = Task.submit(
            task_id=next(ids),
            owner="alice",
            now=clock.now(),
            submitted=cmd.model_dump(mode="json"),
            **cmd.task_fields(),
        )
        store.create(task)
        task = task.committed()
        if status in (Status.RUNNING, Status.SUCCEEDED):
            task = mutate(store, task, lambda t: t.claim(1, WORKER, clock.now(), 30))
        if status is Status.SUCCEEDED:
            task = mutate(store, task, lambda t: t.succeed(1, WORKER, None, clock.now()))
        assert task.status is status
        return task

    return make_task


def cancel(bulk: BulkCancel, principal: Principal = ALICE, **body: object) -> list[str]:
    return bulk.cancel(CancelTasks.model_validate({"group": "team-a", **body}), principal).ids


def test_a_dry_run_names_the_newest_not_ended_and_changes_nothing(
    bulk: BulkCancel, make: Make, store: InMemoryTaskStore
) -> None:
    # Given queued, scheduled, running and succeeded tasks of team-a, and one of team-b
    tasks = [make(status=s) for s in (Status.QUEUED, Status.SCHEDULED, Status.RUNNING, Status.SUCCEEDED)]
    make("team-b")
    # When alice asks for a dry run
    ids = cancel(bulk, dry_run=True)
    # Then it names her group's tasks not yet ended, newest first, and changes none of them
    assert ids == [tasks[2].id, tasks[1].id, tasks[0].id]
    assert [store.get(t.id) for t in tasks] == tasks


def test_each_task_is_cancelled_as_delete_cancels_it_with_the_user_as_actor(
    bulk: BulkCancel, make: Make, store: InMemoryTaskStore
) -> None:
    queued, scheduled, running, done = (
        make(status=s) for s in (Status.QUEUED, Status.SCHEDULED, Status.RUNNING, Status.SUCCEEDED)
    )
    assert cancel(bulk) == [running.id, scheduled.id, queued.id]
    # Queued and scheduled tasks end at once; the running one is asked to stop; the succeeded one is untouched
    assert store.get(queued.id).status is store.get(scheduled.id).status is Status.CANCELLED
    assert store.get(running.id).status is Status.RUNNING
    assert store.get(running.id).cancel_requested
    assert store.get(done.id) == done
    assert store.events(running.id)[-1].type is EventType.CANCEL_REQUESTED
    for task in (queued, scheduled, running):
        assert store.events(task.id)[-1].actor == "alice"


def test_a_task_told_to_stop_is_not_counted_again(bulk: BulkCancel, make: Make, store: InMemoryTaskStore) -> None:
    running = make(status=Status.RUNNING)
    assert cancel(bulk) == [running.id]
    version = store.get(running.id).version
    assert cancel(bulk) == []
    assert store.get(running.id).version == version


def test_the_filter_picks_by_status_and_type_up_to_limit(bulk: BulkCancel, make: Make) -> None:
    sleeps = [make(type_="sleep") for _ in range(3)]
    make(type_="echo")
    make(status=Status.RUNNING, type_="sleep")
    assert cancel(bulk, status="queued", type="sleep", limit=2) == [sleeps[2].id, sleeps[1].id]
    assert cancel(bulk, status="queued", type="sleep", dry_run=True) == [sleeps[0].id]


def test_given_ids_only_the_groups_matching_tasks_are_cancelled(
    bulk: BulkCancel, make: Make, store: InMemoryTaskStore
) -> None:
    # Given a task of each group, an ended one, a sleep task and ids that name nothing
    mine, theirs, ended, sleep = make(), make("team-b"), make(status=Status.SUCCEEDED), make(type_="sleep")
    ids = [theirs.id, mine.id, ended.id, sleep.id, "no-such-task", "not an id", mine.id]
    # When carol (in both groups) cancels them as team-a's echo tasks
    done = cancel(bulk, CAROL, ids=ids, type="echo")
    # Then only team-a's echo task not yet ended went, once; the rest were skipped, not errors
    assert done == [mine.id]
    assert store.get(theirs.id) == theirs
    assert store.get(sleep.id) == sleep


def test_another_groups_tasks_are_neither_touched_nor_revealed(
    bulk: BulkCancel, make: Make, store: InMemoryTaskStore
) -> None:
    theirs = make("team-a")
    # Bob names alice's task as his own group's: it is skipped like an id of no task
    assert cancel(bulk, BOB, group="team-b", ids=[theirs.id]) == []
    # and he may not name her group at all
    with pytest.raises(Forbidden):
        cancel(bulk, BOB, ids=[theirs.id], dry_run=True)
    assert store.get(theirs.id) == theirs


def test_an_admin_may_cancel_in_any_group(bulk: BulkCancel, make: Make) -> None:
    task = make("team-b")
    assert cancel(bulk, ADMIN, group="team-b") == [task.id]


def test_a_task_that_ended_since_it_was_read_is_skipped(
    bulk: BulkCancel, make: Make, store: InMemoryTaskStore, clock: FixedClock
) -> None:
    # Given a running task that succeeds between the listing and its cancel
    task = make(status=Status.RUNNING)
    read = store.get

    def racing_get(task_id: str) -> Task:
        current = read(task_id)
        if current.status is Status.RUNNING:
            mutate(store, current, lambda t: t.succeed(1, WORKER, None, clock.now()))
        return current

    store.get = racing_get  # type: ignore[method-assign]
    # Then it is not counted, and stays succeeded
    assert cancel(bulk, ids=[task.id]) == []
    store.get = read  # type: ignore[method-assign]
    assert store.get(task.id).status is Status.SUCCEEDED
