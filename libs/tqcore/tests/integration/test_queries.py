"""The read-side listings against a real emulator (and the in-memory fake, which must agree): the ``dlq`` index."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.queries import DynamoTaskQueries
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.clock import new_task_id
from tqcore.domain.codec import task_to_dict
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo, Priority, Progress, Status
from tqcore.domain.task import Task
from tqcore.ports import TaskStore
from tqcore.queries import TaskQueries, TaskStamp
from tqcore.settings import CoreSettings
from tqcore.testing import InMemoryTaskQueries, InMemoryTaskStore
from tqcore.usecases.service import mutate

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


def positions(queries: TaskQueries, group: str, before: str | None = None) -> list[str]:
    return [task_id for _, task_id in queries.dead_letter_positions(group, before)]


def test_only_failed_tasks_of_the_group_are_positioned_newest_first(backend: Backend) -> None:
    # Given dead letters in two groups and a task that is still queued
    store, queries = backend
    mine = dead_letters(3, store)
    dead_letters(1, store, "team-b", start=10)
    submitted(store, "team-a", T0)
    # When team-a's dead letters are walked
    found = list(queries.dead_letter_positions("team-a"))
    # Then they are exactly its failed tasks, newest first, each at its index position
    assert [task_id for _, task_id in found] == [t.id for t in reversed(mine)]
    listed = queries.listed([task_id for _, task_id in found])
    assert [position for position, _ in found] == [task.dlq_position for task in listed]
    assert json.loads(listed[0].doc) == task_to_dict(mine[-1])


def test_an_empty_group_has_no_dead_letters(backend: Backend) -> None:
    _, queries = backend
    assert positions(queries, "team-nobody") == []


def test_dead_letters_come_newest_first_across_index_pages(backend: Backend, settings: CoreSettings) -> None:
    store, queries = backend
    tasks = dead_letters(5, store)
    if isinstance(queries, DynamoTaskQueries):
        queries = DynamoTaskQueries(aws.client(settings, "dynamodb"), settings, page_size=2)  # several pages
    assert positions(queries, "team-a") == [t.id for t in reversed(tasks)]


def test_a_position_is_one_that_any_group_can_continue_from(backend: Backend) -> None:
    # Given dead letters of two groups, interleaved in time
    store, queries = backend
    for n in (0, 2, 4):
        dead_letter(store, "team-a", at=T0 + timedelta(seconds=n))
    b = [dead_letter(store, "team-b", at=T0 + timedelta(seconds=n)) for n in (1, 3, 5)]
    # When team-b is walked from before team-a's newest position
    newest_a, _ = next(queries.dead_letter_positions("team-a"))
    # Then team-b lists what finished before that position (a merged listing relies on this)
    assert positions(queries, "team-b", newest_a) == [b[1].id, b[0].id]


def test_a_redriven_task_leaves_the_dead_letters(backend: Backend) -> None:
    store, queries = backend
    first, second = dead_letters(2, store)
    mutate(store, second, lambda t: t.redrive("alice", T0 + timedelta(minutes=1)))
    assert positions(queries, "team-a") == [first.id]


def test_undecodable_snapshots_are_skipped(settings: CoreSettings) -> None:
    # Given a dead letter and, beside it in the index, an item that is not a task
    client = aws.client(settings, "dynamodb")
    store = DynamoTaskStore(client, settings)
    (good,) = dead_letters(1, store)
    client.put_item(
        TableName=settings.table_name,
        Item={"PK": {"S": "TASK#bad"}, "SK": {"S": "TASK"}, "doc": {"S": "{not json"}, "dlq_pk": {"S": "DLQ#team-a"},
              "dlq_sk": {"S": "2026-03-01T13:00:00.000Z#bad"}},
    )  # fmt: skip
    queries = DynamoTaskQueries(client, settings)
    # When the group is walked and its snapshots read, then the good one still comes
    assert positions(queries, "team-a") == ["bad", good.id]
    assert [task.id for task in queries.listed(["bad", good.id])] == [good.id]
    assert [task.id for task in queries.tasks(["bad", good.id])] == [good.id]


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
    asked = [made[2], "no-such-task", made[1], made[0]]
    found, listed = queries.tasks(asked), queries.listed(asked)
    assert [task.id for task in found] == [task.id for task in listed] == [made[2], made[1], made[0]]
    assert found[1].status is listed[1].status is Status.CANCELLED
    assert found[1].version == json.loads(listed[1].doc)["version"] == cancelled.version


def test_a_listed_running_task_shows_its_lease_as_the_heartbeat_moved_it(backend: Backend) -> None:
    from tqcore.ports import LeaseState

    store, queries = backend
    task = mutate(store, submitted(store, "team-a", T0), lambda t: t.claim(1, WORKER, T0, 30))
    assert task.claim_seq is not None
    assert store.extend_lease(task.id, task.claim_seq, T0 + timedelta(seconds=90)) is LeaseState.HELD
    (listed,) = queries.tasks([task.id])
    assert listed.lease_expires_at == T0 + timedelta(seconds=90)
    assert listed.lease_expires_at == store.get(task.id).lease_expires_at
    (document,) = queries.listed([task.id])
    assert json.loads(document.doc) == task_to_dict(store.get(task.id))
    assert json.loads(document.doc)["lease_expires_at"] == "2026-03-01T12:01:30.000Z"


def test_a_listed_running_task_shows_its_progress(backend: Backend) -> None:
    store, queries = backend
    task = mutate(store, submitted(store, "team-a", T0), lambda t: t.claim(1, WORKER, T0, 30))
    assert task.claim_seq is not None
    report = Progress(0.5, "half way", T0 + timedelta(seconds=2))
    assert store.report_progress(task.id, task.claim_seq, report)
    (found,) = queries.tasks([task.id])
    assert found.progress == report
    (document,) = queries.listed([task.id])
    assert json.loads(document.doc)["progress"] == {
        "fraction": 0.5,
        "message": "half way",
        "at": "2026-03-01T12:00:02.000Z",
    }
    assert json.loads(document.doc) == task_to_dict(store.get(task.id))


def test_stamps_tell_version_status_and_progress_of_the_tasks_that_exist(backend: Backend) -> None:
    # Given a queued task, and a running one that reported progress
    store, queries = backend
    queued = submitted(store, "team-a", T0)
    running = mutate(store, submitted(store, "team-a", T0), lambda t: t.claim(1, WORKER, T0, 30))
    assert running.claim_seq is not None
    report = Progress(0.25, "a quarter", T0 + timedelta(seconds=1))
    assert store.report_progress(running.id, running.claim_seq, report)
    # When their stamps are read (with an id that names no task), past one BatchGetItem's 100 keys
    stamps = queries.stamps([queued.id, "no-such-task", running.id, *(f"absent-{n}" for n in range(120))])
    # Then each task's version, status and progress come back, and nothing for the others
    assert stamps == {
        queued.id: TaskStamp(queued.version, Status.QUEUED, None),
        running.id: TaskStamp(running.version, Status.RUNNING, report),
    }


def test_the_oldest_queued_task_is_found_per_pool_and_priority(backend: Backend) -> None:
    # Given queued tasks (queued just now: their re-send deadlines lie in the current bucket) in two pools
    store, queries = backend
    now = datetime.now(UTC).replace(microsecond=0)
    made = {}
    for n, (pool, priority) in enumerate([("default", "normal"), ("default", "normal"), ("media", "high")]):
        cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", "priority": priority})
        at = now - timedelta(seconds=3 - n)
        task = Task.submit(task_id=new_task_id(), owner="alice", now=at, submitted={}, **cmd.task_fields())
        task.pool = pool
        store.create(task)
        made.setdefault((pool, Priority(priority)), at)
    # When the oldest queued tasks are looked up
    # Then each pool's queue of a priority has the earliest queued_at of its tasks; empty queues are left out
    assert queries.oldest_queued() == made


def test_a_groups_schedules_come_newest_first_and_leave_when_they_end(backend: Backend, settings: CoreSettings) -> None:
    # Given a group's repeating tasks, a one-off task waiting for its time, and a task that runs now
    store, queries = backend
    group = f"grp-{new_task_id()}"  # a group of its own: the table is shared by the module's tests
    repeating = [scheduled(store, group, {"every_s": 60}) for _ in range(4)]
    waiting = scheduled(store, group, {"at": "2026-03-02T00:00:00Z"})
    submitted(store, group, T0)
    scheduled(store, f"other-{group}", {"every_s": 60})
    if isinstance(queries, DynamoTaskQueries):
        queries = DynamoTaskQueries(aws.client(settings, "dynamodb"), settings, page_size=2)  # several pages
    # Then the sched index lists exactly the schedules, newest first, across pages and from a position
    made = sorted([t.id for t in repeating] + [waiting.id], reverse=True)
    assert list(queries.scheduled_ids(group)) == made
    assert list(queries.scheduled_ids(group, before=made[2])) == made[3:]
    # When one is cancelled and the one-off task's time comes (it is queued)
    mutate(store, repeating[0], lambda t: t.request_cancel("alice", T0))
    mutate(store, waiting, lambda t: t.promote(T0 + timedelta(days=1)))
    # Then they leave the index; the others stay
    assert list(queries.scheduled_ids(group)) == sorted((t.id for t in repeating[1:]), reverse=True)


def scheduled(store: TaskStore, group: str, schedule: dict[str, object]) -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": group, "schedule": schedule})
    task = Task.submit(
        task_id=new_task_id(), owner="alice", now=T0, submitted=cmd.model_dump(mode="json"), **cmd.task_fields()
    )
    store.create(task)
    return task.committed()
