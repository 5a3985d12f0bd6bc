"""The reaper's and the sweep's reads are bounded: they read deadline buckets from a durable mark, and a backlog
whose deadlines lie ahead sits in partitions they do not read (``tqcore/adapters/dynamodb/deadlines.py``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb import deadlines, keys
from tqcore.adapters.dynamodb.table import Table
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)


def submitted(at: datetime = NOW, **body: Any) -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", **body})
    return Task.submit(
        task_id=new_task_id(), owner="alice", now=at, submitted=cmd.model_dump(mode="json"), **cmd.task_fields()
    )


def store_of(settings: CoreSettings) -> DynamoTaskStore:
    """A store as a freshly started reaper or scheduler has it (no walk made yet in this process)."""
    return DynamoTaskStore(aws.client(settings, "dynamodb"), settings)


def mark(settings: CoreSettings, kind: str) -> datetime | None:
    return deadlines.read_mark(Table(aws.client(settings, "dynamodb"), settings.table_name), kind)


def test_a_deadline_left_in_an_old_bucket_holds_the_mark_and_is_found_after_a_restart(settings: CoreSettings) -> None:
    # Given a reaper that has walked the re-send deadlines once (its mark is put) and a task queued then
    reaper = store_of(settings)
    assert list(reaper.unclaimed(NOW)) == []
    first = mark(settings, keys.RESEND)
    assert first is not None
    assert first <= NOW
    task = submitted()
    reaper.create(task)
    # When an hour goes by and nobody acts on it (a reaper whose commits failed, then restarted)
    later = NOW + timedelta(hours=1)
    assert [t.id for t in reaper.unclaimed(later)] == [task.id]
    # Then the mark stays at the task's bucket, and a restarted reaper still finds it there
    assert mark(settings, keys.RESEND) == keys.bucket_of(keys.RESEND, NOW + timedelta(seconds=1))
    restarted = store_of(settings)
    assert [t.id for t in restarted.unclaimed(later)] == [task.id]
    # And once it is re-sent, its next deadline (due at once: its doubled wait is long past) is filed under the
    # re-send's own time, never behind it, and the walk moves the mark past the old bucket
    stuck = restarted.get(task.id)
    stuck.resend(later)
    restarted.commit(stuck)
    assert [t.id for t in restarted.unclaimed(later + timedelta(seconds=1))] == [task.id]
    moved = mark(settings, keys.RESEND)
    assert moved is not None
    assert moved > keys.bucket_of(keys.RESEND, NOW + timedelta(seconds=1))
    assert moved <= keys.bucket_of(keys.RESEND, later)


def test_a_heartbeat_moves_a_lease_into_the_bucket_of_its_new_expiry(settings: CoreSettings) -> None:
    # Given a claimed task whose lease runs 30 s, walked once by the reaper before the claim
    reaper = store_of(settings)
    assert list(reaper.lease_expired(NOW)) == []
    task = submitted()
    reaper.create(task)
    claimed = reaper.get(task.id)
    claimed.claim(1, "h:1", NOW, 30)
    reaper.commit(claimed)
    assert claimed.claim_seq is not None
    # When its holder heartbeats it two minutes on (another bucket)
    reaper.extend_lease(task.id, claimed.claim_seq, NOW + timedelta(minutes=2))
    # Then no walk finds it expired before then, and every walk after, restarted or not, does
    assert list(reaper.lease_expired(NOW + timedelta(seconds=31))) == []
    assert list(reaper.lease_expired(NOW + timedelta(minutes=1, seconds=55))) == []
    after = NOW + timedelta(minutes=2, seconds=1)
    assert [lease.task_id for lease in reaper.lease_expired(after)] == [task.id]
    assert [lease.task_id for lease in store_of(settings).lease_expired(after)] == [task.id]


def test_a_backlog_whose_deadlines_lie_ahead_costs_a_walk_nothing(settings: CoreSettings) -> None:
    # Given a backlog: tasks queued whose re-send deadlines lie ten minutes ahead, tasks waiting a day ahead, and
    # running attempts whose leases run out in ten minutes
    slow = settings.model_copy(update={"resend_after_s": 600})
    store = store_of(slow)
    for _ in range(24):
        store.create(submitted())
        store.create(submitted(schedule={"at": (NOW + timedelta(days=1)).isoformat()}))
        running = submitted()
        store.create(running)
        claimed = store.get(running.id)
        claimed.claim(1, "h:1", NOW, 600)
        store.commit(claimed)
    # When a restarted reaper and scheduler walk every kind of deadline a minute later
    walker = store_of(slow)
    read = partitions_read(walker)
    later = NOW + timedelta(minutes=1)
    assert list(walker.unclaimed(later)) == []
    assert list(walker.lease_expired(later)) == []
    assert list(walker.overdue(later)) == []
    # Then the partitions they read hold none of the backlog (on ministack a query costs by its partition's items)
    assert read
    db = Table(aws.client(slow, "dynamodb"), slow.table_name)
    held = {
        pk: db.count(
            10_000,
            IndexName="reap",
            KeyConditionExpression="reap_pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
        )
        for pk in read
    }
    assert sum(held.values()) == 0, held


def test_a_backfill_filing_a_deadline_behind_the_mark_moves_the_mark_back(settings: CoreSettings) -> None:
    # Given a sweep whose mark is now, and a task due two days ago filed behind it (as the backfill files one)
    store = store_of(settings)
    assert list(store.overdue(NOW)) == []
    long_ago = NOW - timedelta(days=2)
    task = submitted(long_ago - timedelta(hours=1), schedule={"at": long_ago.isoformat()})
    store.create(task)
    assert [t.id for t in store_of(settings).overdue(NOW)] == []
    # When the mark is moved back to it, then the sweep finds it (a restarted one too)
    deadlines.lower_mark(Table(aws.client(settings, "dynamodb"), settings.table_name), keys.SWEEP, long_ago)
    assert [t.id for t in store.overdue(NOW)] == [task.id]
    assert [t.id for t in store_of(settings).overdue(NOW)] == [task.id]


def partitions_read(store: DynamoTaskStore) -> set[str]:
    """The ``reap`` index partitions every query of ``store`` reads, from now on."""
    read: set[str] = set()
    client = store._db.client

    def seen(params: dict[str, Any], **_: Any) -> None:
        if params.get("IndexName") == "reap":
            read.add(params["ExpressionAttributeValues"][":pk"]["S"])

    client.meta.events.register("provide-client-params.dynamodb.Query", seen)
    return read


def test_deadlines_written_before_the_first_walk_of_a_new_table_are_found(settings: CoreSettings) -> None:
    # Given a new table (no walk yet: no mark) where a task was queued and another claimed by an executor that
    # then died, both before any reaper ran (writers deployed first, or a reaper crash-looping for a while)
    now = datetime.now(UTC)
    writer = store_of(settings)
    queued = submitted(at=now)
    writer.create(queued)
    running = submitted(at=now)
    writer.create(running)
    running = running.committed()
    running.claim(1, "host:1", now, 30)
    writer.commit(running)
    # When the first reaper walks twenty minutes later
    reaper = store_of(settings)
    later = now + timedelta(minutes=20)
    # Then it still finds the lost enqueue and the expired lease (the walk starts at the table's creation)
    assert [t.id for t in reaper.unclaimed(later)] == [queued.id]
    assert [lease.task_id for lease in reaper.lease_expired(later)] == [running.id]


def test_the_first_mark_starts_at_the_table_creation_within_a_bound() -> None:
    now = datetime(2026, 3, 1, 12, 0, 10, tzinfo=UTC)
    margin = deadlines.MARGINS[keys.LEASE]
    # a table created ten minutes ago: its creation; created a year ago: a day back at most; no creation time
    # known, or created "after" now (a test's fixed clock): now less the margin
    assert deadlines.first_mark(keys.LEASE, now, now - timedelta(minutes=10)) == keys.bucket_of(
        keys.LEASE, now - timedelta(minutes=10) - margin
    )
    assert deadlines.first_mark(keys.LEASE, now, now - timedelta(days=365)) == keys.bucket_of(
        keys.LEASE, now - deadlines.NO_MARK_LOOKBACK
    )
    assert deadlines.first_mark(keys.LEASE, now, None) == keys.bucket_of(keys.LEASE, now - margin)
    assert deadlines.first_mark(keys.LEASE, now, now + timedelta(days=200)) == keys.bucket_of(keys.LEASE, now - margin)
