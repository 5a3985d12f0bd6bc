"""The one-off backfill puts tasks written before the sweep existed where the sweep looks, once per table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.backfill import (
    SCHEDULE_KEYS,
    SWEEP_KEYS,
    ScheduleKeysBackfill,
    SweepKeysBackfill,
    in_turn,
)
from tqcore.adapters.dynamodb.queries import DynamoTaskQueries
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Status
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
TWO_DAYS_AGO = NOW - timedelta(days=2)


@pytest.fixture
def ddb(settings: CoreSettings) -> Any:
    """A raw DynamoDB client, to write and read items as older code left them."""
    return aws.client(settings, "dynamodb")


def scheduled(
    store: DynamoTaskStore, at: datetime, group: str = "team-a", schedule: dict[str, Any] | None = None
) -> Task:
    """A one-shot task due ``at`` (or one of ``schedule``, from ``at``), submitted an hour before, stored by today's
    code."""
    body = {"at": at.isoformat()} if schedule is None else {**schedule, "start_at": at.isoformat()}
    cmd = SubmitTask.model_validate({"type": "echo", "group": group, "schedule": body})
    submitted_at = at - timedelta(hours=1)
    task = Task.submit(
        task_id=new_task_id(),
        owner="alice",
        now=submitted_at,
        submitted=cmd.model_dump(mode="json"),
        **cmd.task_fields(),
    )
    assert task.status is Status.SCHEDULED
    store.create(task)
    return task


def stranded(store: DynamoTaskStore, ddb: Any, settings: CoreSettings) -> Task:
    """A one-shot task due two days ago, stored as the code before the sweep wrote it: no ``reap`` keys."""
    task = scheduled(store, TWO_DAYS_AGO)
    # The only difference between the old code's snapshot and today's: ``index_attributes`` wrote no REAP#D keys.
    ddb.update_item(
        TableName=settings.table_name,
        Key={"PK": {"S": keys.task_pk(task.id)}, "SK": {"S": keys.SNAPSHOT_SK}},
        UpdateExpression="REMOVE reap_pk, reap_sk",
    )
    return task


def swept(store: DynamoTaskStore, settings: CoreSettings) -> set[str]:
    """Ids of every task the scheduler's sweep finds overdue now, over all sweep shards."""
    return {task.id for task in store.overdue(NOW)}


def snapshot(ddb: Any, settings: CoreSettings, task_id: str) -> dict[str, Any]:
    key = {"PK": {"S": keys.task_pk(task_id)}, "SK": {"S": keys.SNAPSHOT_SK}}
    item: dict[str, Any] = ddb.get_item(TableName=settings.table_name, Key=key, ConsistentRead=True)["Item"]
    return item


def test_the_backfill_lets_the_sweep_find_a_task_stranded_before_it_and_runs_once_per_table(
    dynamo_store: DynamoTaskStore, ddb: Any, settings: CoreSettings
) -> None:
    # Given a sweep that ran before two days ago (its mark is then), a task the old scheduler stranded (due two days
    # ago, no sweep keys) and a task written by today's code
    assert list(dynamo_store.overdue(TWO_DAYS_AGO - timedelta(hours=2))) == []
    old = stranded(dynamo_store, ddb, settings)
    new = scheduled(dynamo_store, TWO_DAYS_AGO)
    assert swept(dynamo_store, settings) == {new.id}
    # When the backfill runs, a page of two index items per step
    backfill = SweepKeysBackfill(ddb, settings, page_size=2)
    assert backfill.run() == 1
    # Then the sweep finds the stranded task, with the keys today's code would have written (and only it changed)
    assert swept(dynamo_store, settings) == {new.id, old.id}
    item = snapshot(ddb, settings, old.id)
    expected = keys.sweep_index_attributes(old.id, item["due_sk"]["S"], settings.reap_shards)
    assert {name: item[name]["S"] for name in ("reap_pk", "reap_sk")} == expected
    assert item["version"] == {"N": str(old.version)}
    migration = ddb.get_item(
        TableName=settings.table_name, Key={"PK": {"S": keys.MIGRATION_PK}, "SK": {"S": SWEEP_KEYS}}
    )["Item"]
    assert migration["updated"] == {"N": "1"}
    # And a later run (another replica, a restart) reads the record and touches nothing, even an old-style item
    later = stranded(dynamo_store, ddb, settings)
    again = SweepKeysBackfill(ddb, settings)
    assert again.step() is True
    assert again.run() == 0
    assert "reap_pk" not in snapshot(ddb, settings, later.id)


def test_the_backfill_never_overwrites_a_commit_made_after_it_read_the_index(
    dynamo_store: DynamoTaskStore, ddb: Any, settings: CoreSettings
) -> None:
    # Given a stranded task, read from the index by the backfill
    task = stranded(dynamo_store, ddb, settings)
    item = snapshot(ddb, settings, task.id)
    read = {name: item[name] for name in ("PK", "SK", "due_sk", "version")}
    # When a real commit changes it before the backfill's update (the task is cancelled: no index keys)
    current = dynamo_store.get(task.id)
    current.request_cancel("alice", NOW)
    dynamo_store.commit(current)
    # Then the backfill's update is refused and the commit's snapshot is left as it wrote it
    assert SweepKeysBackfill(ddb, settings).give_sweep_keys(read) is False
    after = snapshot(ddb, settings, task.id)
    assert after["status"] == {"S": "cancelled"}
    assert "reap_pk" not in after


def test_the_schedule_backfill_files_waiting_schedules_written_before_the_sched_index(
    dynamo_store: DynamoTaskStore, ddb: Any, settings: CoreSettings
) -> None:
    # Given a one-off task and a repeating task waiting since before the sched index (no sched keys), a one-off
    # task written by today's code, and a task that is due but no schedule's (a retry's backoff)
    queries = DynamoTaskQueries(ddb, settings)
    group = f"grp-{new_task_id()}"
    old_at = without_sched_keys(ddb, settings, scheduled(dynamo_store, NOW + timedelta(days=1), group))
    old_every = without_sched_keys(ddb, settings, scheduled(dynamo_store, NOW, group, {"every_s": 3600}))
    new = scheduled(dynamo_store, NOW + timedelta(days=1), group)
    assert list(queries.scheduled_ids(group)) == [new.id]
    # When the schedule backfill runs after the sweep backfill, two index items a step
    step = in_turn(SweepKeysBackfill(ddb, settings).step, ScheduleKeysBackfill(ddb, settings, page_size=2).step)
    while not step():
        pass
    # Then the schedules page lists all three, and the snapshots are otherwise as they were
    assert list(queries.scheduled_ids(group)) == sorted([old_at.id, old_every.id, new.id], reverse=True)
    assert snapshot(ddb, settings, old_every.id)["version"] == {"N": str(old_every.version)}
    record = ddb.get_item(
        TableName=settings.table_name, Key={"PK": {"S": keys.MIGRATION_PK}, "SK": {"S": SCHEDULE_KEYS}}
    )["Item"]
    assert int(record["updated"]["N"]) >= 2  # the table is shared by the module's tests: at least these two
    # And a later run touches nothing
    later = without_sched_keys(ddb, settings, scheduled(dynamo_store, NOW + timedelta(days=1), group))
    assert ScheduleKeysBackfill(ddb, settings).run() == 0
    assert "sch_pk" not in snapshot(ddb, settings, later.id)


def without_sched_keys(ddb: Any, settings: CoreSettings, task: Task) -> Task:
    """The task's snapshot as the code before the sched index wrote it."""
    ddb.update_item(
        TableName=settings.table_name,
        Key={"PK": {"S": keys.task_pk(task.id)}, "SK": {"S": keys.SNAPSHOT_SK}},
        UpdateExpression="REMOVE sch_pk, sch_sk",
    )
    return task
