"""The read-side listings against a real emulator (and the in-memory fake, which must agree): the ``dlq`` index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.queries import DynamoTaskQueries
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import InvalidCursor
from tqcore.domain.model import ErrorInfo, Status
from tqcore.domain.task import Task
from tqcore.ports import TaskStore
from tqcore.queries import TaskQueries, encode_cursor
from tqcore.service import mutate
from tqcore.settings import CoreSettings
from tqcore.testing import InMemoryTaskQueries, InMemoryTaskStore

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WORKER = "host-a:1"

Backend = tuple[TaskStore, TaskQueries]


@pytest.fixture(params=["dynamodb", "in-memory"])
def backend(request: pytest.FixtureRequest, settings: CoreSettings) -> Backend:
    """A store and the listings over it: DynamoDB's, or the in-memory fakes (one contract for both)."""
    if request.param == "in-memory":
        store = InMemoryTaskStore()
        return store, InMemoryTaskQueries(store)
    client = aws.client(settings, "dynamodb")
    return DynamoTaskStore(client, settings), DynamoTaskQueries(client, settings)


def submitted(store: TaskStore, group: str, at: datetime) -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": group, "retry": {"max_retries": 0}})
    task = Task.submit(
        task_id=new_task_id(), owner="alice", now=at, submitted=cmd.model_dump(mode="json"), **cmd.task_fields()
    )
    store.create(task)
    return task.committed()


def dead_letter(store: TaskStore, group: str = "team-a", *, at: datetime = T0) -> Task:
    """A task driven through the domain to ``failed``: submit, claim, fail with no retries left (at ``at``)."""
    task = submitted(store, group, at - timedelta(seconds=2))
    task = mutate(store, task, lambda t: t.claim(1, WORKER, at - timedelta(seconds=1), 30))
    task = mutate(store, task, lambda t: t.fail(1, WORKER, ErrorInfo("E", "boom"), at, jitter=0.0))
    assert task.status is Status.FAILED
    return task


def dead_letters(count: int, store: TaskStore, group: str = "team-a", start: int = 0) -> list[Task]:
    return [dead_letter(store, group, at=T0 + timedelta(seconds=start + n)) for n in range(count)]


def every_page(queries: TaskQueries, group: str, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    for _ in range(50):
        tasks, cursor = queries.dead_lettered(group, limit, cursor)
        pages.append([t.id for t in tasks])
        if cursor is None:
            return pages
    raise AssertionError("the pages never ended")


def test_only_failed_tasks_of_the_group_are_listed_newest_first(backend: Backend) -> None:
    # Given dead letters in two groups and a task that is still queued
    store, queries = backend
    mine = dead_letters(3, store)
    dead_letters(1, store, "team-b", start=10)
    submitted(store, "team-a", T0)
    # When team-a's dead letters are listed
    tasks, cursor = queries.dead_lettered("team-a", 10)
    # Then they are exactly its failed tasks, newest first, as whole tasks
    assert [t.id for t in tasks] == [t.id for t in reversed(mine)]
    assert tasks[0] == mine[-1]
    assert cursor is None


def test_an_empty_group_lists_nothing(backend: Backend) -> None:
    _, queries = backend
    assert queries.dead_lettered("team-nobody", 5) == ([], None)


@pytest.mark.parametrize(("count", "limit", "pages"), [(5, 2, 3), (4, 2, 2), (3, 1, 3), (2, 5, 1)])
def test_pages_hold_every_dead_letter_once_with_no_empty_last_page(
    backend: Backend, count: int, limit: int, pages: int
) -> None:
    store, queries = backend
    tasks = dead_letters(count, store)
    got = every_page(queries, "team-a", limit)
    assert len(got) == pages
    assert all(0 < len(page) <= limit for page in got)
    assert [task_id for page in got for task_id in page] == [t.id for t in reversed(tasks)]


def test_a_cursor_is_a_position_that_any_group_can_continue_from(backend: Backend) -> None:
    # Given dead letters of two groups, interleaved in time
    store, queries = backend
    for n in (0, 2, 4):
        dead_letter(store, "team-a", at=T0 + timedelta(seconds=n))
    b = [dead_letter(store, "team-b", at=T0 + timedelta(seconds=n)) for n in (1, 3, 5)]
    # When a cursor after team-a's newest is used for team-b
    _, cursor = queries.dead_lettered("team-a", 1)
    tasks, _ = queries.dead_lettered("team-b", 10, cursor)
    # Then team-b lists what finished before that position (a merged listing relies on this)
    assert [t.id for t in tasks] == [b[1].id, b[0].id]


def test_a_redriven_task_leaves_the_listing(backend: Backend) -> None:
    store, queries = backend
    first, second = dead_letters(2, store)
    mutate(store, second, lambda t: t.redrive("alice", T0 + timedelta(minutes=1)))
    assert [t.id for t in queries.dead_lettered("team-a", 10)[0]] == [first.id]


@pytest.mark.parametrize("cursor", ["***", encode_cursor("runs", "3"), encode_cursor("dlq", "2026#x")])
def test_a_cursor_that_is_not_a_dlq_position_is_refused(backend: Backend, cursor: str) -> None:
    _, queries = backend
    with pytest.raises(InvalidCursor):
        queries.dead_lettered("team-a", 10, cursor)


def test_undecodable_index_items_are_skipped(settings: CoreSettings) -> None:
    # Given a dead letter and, beside it in the index, an item that is not a task
    client = aws.client(settings, "dynamodb")
    store = DynamoTaskStore(client, settings)
    (good,) = dead_letters(1, store)
    client.put_item(
        TableName=settings.table_name,
        Item={"PK": {"S": "TASK#bad"}, "SK": {"S": "TASK"}, "doc": {"S": "{not json"}, "dlq_pk": {"S": "DLQ#team-a"},
              "dlq_sk": {"S": "2026-03-01T13:00:00.000Z#bad"}},
    )  # fmt: skip
    # When the group is listed, then the good one still comes
    assert [t.id for t in DynamoTaskQueries(client, settings).dead_lettered("team-a", 10)[0]] == [good.id]


def test_a_groups_ids_come_newest_first_across_index_pages(backend: Backend, settings: CoreSettings) -> None:
    store, queries = backend
    group = f"grp-{new_task_id()}"  # a group of its own: the table is shared by the module's tests
    made = [submitted(store, group, T0).id for _ in range(7)]
    submitted(store, f"other-{group}", T0)
    if isinstance(queries, DynamoTaskQueries):
        queries = DynamoTaskQueries(aws.client(settings, "dynamodb"), settings, page_size=3)  # several pages
    assert list(queries.newest_ids(group)) == sorted(made, reverse=True)
    assert list(queries.newest_ids(group, before=sorted(made)[3])) == sorted(made)[:3][::-1]


def test_tasks_are_read_in_the_order_asked_and_missing_ids_are_left_out(backend: Backend) -> None:
    store, queries = backend
    made = [submitted(store, "team-a", T0).id for _ in range(3)]
    cancelled = mutate(store, store.get(made[1]), lambda t: t.request_cancel("alice", T0))
    found = queries.tasks([made[2], "no-such-task", made[1], made[0]])
    assert [task.id for task in found] == [made[2], made[1], made[0]]
    assert found[1].status is Status.CANCELLED
    assert found[1].version == cancelled.version


def test_a_listed_running_task_shows_its_lease_as_the_heartbeat_moved_it(backend: Backend) -> None:
    from tqcore.ports import LeaseState

    store, queries = backend
    task = mutate(store, submitted(store, "team-a", T0), lambda t: t.claim(1, WORKER, T0, 30))
    assert task.claim_seq is not None
    assert store.extend_lease(task.id, task.claim_seq, T0 + timedelta(seconds=90)) is LeaseState.HELD
    (listed,) = queries.tasks([task.id])
    assert listed.lease_expires_at == T0 + timedelta(seconds=90)
    assert listed.lease_expires_at == store.get(task.id).lease_expires_at
