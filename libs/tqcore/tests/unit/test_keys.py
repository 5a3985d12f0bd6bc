"""The single-table key design: sparse index keys by state, shards, buckets and the reaper's deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tqcore.adapters.dynamodb import keys
from tqcore.domain.codec import parse_ts
from tqcore.domain.model import Schedule, Status
from tqcore.domain.task import Task

pytestmark = pytest.mark.unit

FAST = settings(database=None, deadline=None)
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
RESEND_AFTER_S = 30.0


def task_in(status: Status, *, resends: int = 0) -> Task:
    """A task in ``status`` with every timestamp set, so only the status can decide which keys it gets."""
    return Task(
        id="01hqtask",
        type="echo",
        group="team-a",
        owner="alice",
        created_at=T0,
        status=status,
        queued_at=T0 + timedelta(seconds=1),
        next_run_at=T0 + timedelta(minutes=3, seconds=30),
        lease_expires_at=T0 + timedelta(seconds=45),
        finished_at=T0 + timedelta(minutes=10),
        resends=resends,
    )


def attrs(task: Task) -> dict[str, str]:
    return keys.index_attributes(task, due_shards=4, reap_shards=8, resend_after_s=RESEND_AFTER_S)


def reap_deadline(task: Task) -> datetime:
    stamp, _, task_id = attrs(task)["reap_sk"].partition("#")
    assert task_id == task.id
    parsed = parse_ts(stamp)
    assert parsed is not None
    return parsed


@pytest.mark.parametrize("status", list(Status))
def test_each_index_holds_only_the_states_it_serves(status: Status) -> None:
    got = attrs(task_in(status))
    assert (got["grp_pk"], got["grp_sk"]) == ("G#team-a", "01hqtask")
    assert ("due_pk" in got) == (status in (Status.SCHEDULED, Status.RETRYING))
    # A running task is reaped by its lease (in its item); due work also sits in the sweep's partitions of the
    # reap index.
    assert ("reap_pk" in got) == (status in (Status.QUEUED, Status.RUNNING, Status.SCHEDULED, Status.RETRYING))
    if status is Status.RUNNING:
        assert got == {**got, **keys.lease_index_attributes("01hqtask", T0 + timedelta(seconds=45), 8)}
    if status in (Status.SCHEDULED, Status.RETRYING):
        # in the ten-minute sweep bucket of its due time (08:03:30)
        assert got["reap_pk"] == f"REAP#D#2026-01-05T08:00#{keys.shard_of('01hqtask', 8)}"
        assert got["reap_sk"] == got["due_sk"]
    assert ("dlq_pk" in got) == (status is Status.FAILED)
    for index, (pk, sk) in keys.INDEXES.items():
        assert (pk in got) == (sk in got), index


@pytest.mark.parametrize("status", [Status.SCHEDULED, Status.RETRYING])
def test_due_keys_bucket_by_minute_and_sort_by_time(status: Status) -> None:
    got = attrs(task_in(status))
    shard = keys.shard_of("01hqtask", 4)
    assert got["due_pk"] == f"DUE#2026-01-05T08:03#{shard}"
    assert got["due_sk"] == "2026-01-05T08:03:30.000Z#01hqtask"


def test_a_waiting_task_without_a_time_is_not_due() -> None:
    task = task_in(Status.SCHEDULED)
    task.next_run_at = None
    assert "due_pk" not in attrs(task)


def test_dlq_keys_sort_by_when_the_task_failed() -> None:
    got = attrs(task_in(Status.FAILED))
    assert (got["dlq_pk"], got["dlq_sk"]) == ("DLQ#team-a", "2026-01-05T08:10:00.000Z#01hqtask")


def test_a_lease_is_reaped_when_it_expires() -> None:
    got = keys.lease_index_attributes("01hqtask", T0 + timedelta(seconds=45), 8)
    assert got == {
        "reap_pk": f"REAP#R#2026-01-05T08:00#{keys.shard_of('01hqtask', 8)}",
        "reap_sk": "2026-01-05T08:00:45.000Z#01hqtask",
    }


def test_queued_tasks_leases_and_due_work_never_share_a_reap_partition() -> None:
    queued = attrs(task_in(Status.QUEUED))["reap_pk"]
    lease = keys.lease_index_attributes("01hqtask", T0, 8)["reap_pk"]
    due = attrs(task_in(Status.SCHEDULED))["reap_pk"]
    assert queued.startswith("REAP#Q#")
    assert lease.startswith("REAP#R#")
    assert due.startswith("REAP#D#")


@pytest.mark.parametrize(("resends", "wait_s"), [(0, 30), (1, 60), (2, 120), (3, 240), (4, 480), (5, 930), (12, 930)])
def test_the_resend_deadline_doubles_with_each_resend_up_to_a_cap(resends: int, wait_s: float) -> None:
    task = task_in(Status.QUEUED, resends=resends)
    assert reap_deadline(task) == T0 + timedelta(seconds=1 + wait_s)


def test_the_resend_deadline_follows_resend_after_s() -> None:
    task = task_in(Status.QUEUED)
    got = keys.index_attributes(task, due_shards=4, reap_shards=8, resend_after_s=5)
    assert got["reap_sk"].startswith("2026-01-05T08:00:06.000Z#")


def test_a_deadline_is_filed_in_the_bucket_of_its_own_time_whatever_its_kind() -> None:
    # A queued task's re-send deadline (08:00:31) sits in its minute; a heartbeat moving a lease moves both keys
    assert attrs(task_in(Status.QUEUED))["reap_pk"] == f"REAP#Q#2026-01-05T08:00#{keys.shard_of('01hqtask', 8)}"
    moved = keys.lease_index_attributes("01hqtask", T0 + timedelta(minutes=1, seconds=5), 8)
    assert moved["reap_pk"].startswith("REAP#R#2026-01-05T08:01#")
    # The sweep's buckets are ten minutes wide, aligned on the hour
    assert keys.bucket_of(keys.SWEEP, T0 + timedelta(minutes=19, seconds=59)) == T0 + timedelta(minutes=10)
    assert keys.bucket_of(keys.RESEND, T0 + timedelta(seconds=59.9)) == T0


@given(at=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
@FAST
def test_a_deadline_lies_in_its_bucket(at: datetime) -> None:
    for kind in (keys.RESEND, keys.LEASE, keys.SWEEP):
        start = keys.bucket_of(kind, at)
        assert start <= at < start + keys.BUCKET_WIDTH[kind]


def test_shard_of_is_stable_across_processes() -> None:
    # crc32, not hash(): pinned values would change if the function changed
    assert [keys.shard_of(task_id, 4) for task_id in ("abc", "t-1", "01hqtask")] == [2, 3, 3]
    assert keys.shard_of("abc", 7) == 5


@FAST
@given(task_id=st.text(min_size=1, max_size=40), shards=st.integers(min_value=1, max_value=64))
def test_shard_of_is_in_range_and_deterministic(task_id: str, shards: int) -> None:
    shard = keys.shard_of(task_id, shards)
    assert 0 <= shard < shards
    assert keys.shard_of(task_id, shards) == shard


def test_shards_spread_tasks() -> None:
    used = {keys.shard_of(f"task-{n}", 8) for n in range(200)}
    assert used == set(range(8))


def test_minute_buckets_cover_every_minute_between_two_times() -> None:
    start = T0.replace(second=30)
    got = keys.minute_buckets(start, start + timedelta(minutes=2, seconds=45))
    assert len(got) == 4
    assert got[0] == start.strftime("%Y-%m-%dT%H:%M")


def test_minute_bucket_truncates_to_the_utc_minute() -> None:
    assert keys.minute_bucket(datetime(2026, 1, 5, 8, 7, 59, 999999, tzinfo=UTC)) == "2026-01-05T08:07"
    plus_two = datetime(2026, 1, 5, 12, 7, 1, tzinfo=timezone(timedelta(hours=2)))
    assert keys.minute_bucket(plus_two) == "2026-01-05T10:07"


def test_event_sort_keys_sort_in_sequence_order() -> None:
    sks = [keys.event_sk(seq) for seq in (1, 2, 9, 10, 100, 12345)]
    assert sks == sorted(sks)
    assert keys.event_sk(7) == "EVT#0000000007"


def test_item_keys() -> None:
    assert keys.task_pk("t-1") == "TASK#t-1"
    assert keys.idem_pk("team-a", "k-1") == "IDEM#team-a#k-1"
    assert keys.idem_pk("team-b", "k-1") != keys.idem_pk("team-a", "k-1")


def test_a_tasks_events_live_in_history_partitions_of_consecutive_seqs_apart_from_its_snapshot() -> None:
    size = keys.HISTORY_BUCKET
    assert {keys.event_pk("t-1", seq) for seq in (1, 2, size - 1)} == {"HIST#t-1#0"}
    assert keys.event_pk("t-1", size) == keys.history_pk("t-1", 1) == "HIST#t-1#1"
    assert keys.event_pk("t-1", 1) != keys.task_pk("t-1")


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize(
    "schedule",
    [None, Schedule(at=T0 + timedelta(hours=1)), Schedule(every_s=60), Schedule(cron="0 * * * *")],
    ids=["none", "at", "every", "cron"],
)
def test_the_sched_index_holds_repeating_tasks_until_they_end_and_at_tasks_until_their_time(
    status: Status, schedule: Schedule | None
) -> None:
    task = task_in(status)
    task.schedule = schedule
    got = attrs(task)
    listed = False if schedule is None or status.is_terminal else schedule.is_repeating or status is Status.SCHEDULED
    assert ("sch_pk" in got) == listed
    if listed:
        assert (got["sch_pk"], got["sch_sk"]) == ("S#team-a", "01hqtask")
    assert keys.on_schedule(task) == listed
