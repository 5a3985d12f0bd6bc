"""The DynamoDB event store against a real emulator: atomic commits, the version condition, idempotency."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import LeaseHeld, TaskNotFound, TaskTooLarge, VersionConflict
from tqcore.domain.model import ErrorInfo, Progress, Status
from tqcore.domain.task import Task
from tqcore.ports import DuplicateRequest, IdempotencyRecord, LeaseRecord, LeaseState, TaskStore
from tqcore.settings import CoreSettings
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.integration

#: moto 5.2.5's TransactWriteItems checks conditions and writes without a lock (and rolls back by restoring a
#: copy of the table), so concurrent transactions can both commit there. ministack, like DynamoDB, serialises
#: them; these races are proved on ministack and only skipped on moto.
MOTO_TRANSACTIONS_NOT_ATOMIC = pytest.mark.skipif(
    os.environ.get("TQ_TEST_EMULATOR") == "moto", reason="moto's TransactWriteItems is not atomic under concurrency"
)

#: moto 5.x sizes an UpdateItem's SET as the item's current size plus the new value, without taking away the value
#: it replaces, so an update of a 250 KB ``doc`` looks like 500 KB and is refused there; ministack, like DynamoDB,
#: sizes the item the update leaves.
MOTO_UPDATE_SIZES_WRONG = pytest.mark.skipif(
    os.environ.get("TQ_TEST_EMULATOR") == "moto", reason="moto sizes an UpdateItem as old item + new values"
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def new_task(**body: Any) -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", **body})
    return Task.submit(
        task_id=new_task_id(), owner="alice", now=NOW, submitted=cmd.model_dump(mode="json"), **cmd.task_fields()
    )


def test_create_then_get_returns_the_snapshot_and_its_events(store: TaskStore) -> None:
    # Given a submitted task
    task = new_task(payload={"x": 1})
    # When it is created
    store.create(task)
    # Then the snapshot and both events are stored
    got = store.get(task.id)
    assert (got.status, got.version, got.payload) == (Status.QUEUED, 2, {"x": 1})
    assert [(e.seq, e.type.value) for e in store.events(task.id)] == [(1, "submitted"), (2, "queued")]


def test_get_unknown_task_raises_not_found(store: TaskStore) -> None:
    with pytest.raises(TaskNotFound):
        store.get("no-such-task")


def test_commit_on_a_stale_version_is_refused_and_returns_the_current_task(store: TaskStore) -> None:
    # Given two readers of the same task
    task = new_task()
    store.create(task)
    first, second = store.get(task.id), store.get(task.id)
    # When both claim, the first commits
    first.claim(1, "host:1", NOW, 30)
    store.commit(first)
    second.claim(1, "host:2", NOW, 30)
    # Then the second is refused with the winner's snapshot, and only one claim was recorded
    with pytest.raises(VersionConflict) as refused:
        store.commit(second)
    assert refused.value.current is not None
    assert refused.value.current.worker == "host:1"
    assert [e.type.value for e in store.events(task.id)].count("claimed") == 1


def test_the_commit_observer_hears_each_committed_change_once_and_no_refused_one(settings: CoreSettings) -> None:
    # Given a store whose composition root observes its commits (as the services count metrics)
    heard: list[tuple[str, list[str]]] = []
    store = DynamoTaskStore(
        aws.client(settings, "dynamodb"),
        settings,
        on_commit=lambda task, events: heard.append((task.id, [e.type.value for e in events])),
    )
    task = new_task()
    # When a task is created, claimed, and a stale copy then tries to claim it too
    store.create(task)
    first, stale = store.get(task.id), store.get(task.id)
    first.claim(1, "host:1", NOW, 30)
    store.commit(first)
    stale.claim(1, "host:2", NOW, 30)
    with pytest.raises(VersionConflict):
        store.commit(stale)
    # Then the observer heard the two committed changes, with their events, and not the refused one
    assert heard == [(task.id, ["submitted", "queued"]), (task.id, ["claimed"])]


def test_a_failing_commit_observer_does_not_make_a_committed_change_look_failed(settings: CoreSettings) -> None:
    def broken(task: Task, events: Any) -> None:
        raise RuntimeError("metrics are broken")

    store = DynamoTaskStore(aws.client(settings, "dynamodb"), settings, on_commit=broken)
    task = new_task()
    store.create(task)  # no error: the task is stored
    claimed = store.get(task.id)
    claimed.claim(1, "host:1", NOW, 30)
    store.commit(claimed)
    assert store.get(task.id).worker == "host:1"


@MOTO_TRANSACTIONS_NOT_ATOMIC
def test_two_writers_racing_one_wins_and_no_event_is_lost_or_duplicated(store: TaskStore) -> None:
    # Given one task and two writers released at the same instant, many rounds
    task = new_task()
    store.create(task)
    rounds, outcomes = 15, []
    for round_no in range(rounds):
        barrier = threading.Barrier(2)
        results: list[str] = []

        def writer(
            name: str, round_no: int = round_no, barrier: threading.Barrier = barrier, results: list[str] = results
        ) -> None:
            mine = store.get(task.id)
            mine.update({"description": f"{name}-{round_no}"}, name, NOW)
            barrier.wait()
            try:
                store.commit(mine)
                results.append("won")
            except VersionConflict:
                results.append("lost")

        threads = [threading.Thread(target=writer, args=(n,)) for n in ("w1", "w2")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        outcomes.append(sorted(results))
    # Then, as both read the same version before either committed, every round has one winner, one loser
    assert outcomes == [["lost", "won"]] * rounds
    # and the history is gap-free: one event per committed version, numbered 1..version
    final = store.get(task.id)
    seqs = [e.seq for e in store.events(task.id)]
    assert seqs == list(range(1, final.version + 1))
    assert final.version == 2 + rounds


@MOTO_TRANSACTIONS_NOT_ATOMIC
def test_concurrent_mutations_through_mutate_all_apply_exactly_once(store: TaskStore) -> None:
    # Given eight writers each appending their own marker through the optimistic retry loop
    task = new_task(payload={"seen": []})
    store.create(task)
    barrier = threading.Barrier(8)

    def writer(n: int) -> None:
        barrier.wait()
        current = store.get(task.id)
        mutate(store, current, lambda t: t.update({"payload": {"seen": [*t.payload["seen"], n]}}, f"u{n}", NOW))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then every change landed once and the event log matches the version
    final = store.get(task.id)
    assert sorted(final.payload["seen"]) == list(range(8))
    assert [e.seq for e in store.events(task.id)] == list(range(1, final.version + 1))
    assert final.version == 2 + 8


def test_idempotency_record_is_written_with_the_task_and_blocks_a_second_create(store: TaskStore) -> None:
    # Given a task created with an idempotency key
    first = new_task(idempotency_key="k")
    record = IdempotencyRecord("team-a", "k", "fp-1", first.id)
    store.create(first, record)
    # When another task tries the same key in the same group
    second = new_task(idempotency_key="k")
    with pytest.raises(DuplicateRequest) as dup:
        store.create(second, IdempotencyRecord("team-a", "k", "fp-2", second.id))
    # Then the first record is returned and the second task was not written at all
    assert dup.value.record == record
    with pytest.raises(TaskNotFound):
        store.get(second.id)
    assert store.events(second.id) == []
    # and the same key in another group is independent
    other = new_task(group="team-b", idempotency_key="k")
    store.create(other, IdempotencyRecord("team-b", "k", "fp-3", other.id))
    assert store.idempotency_record("team-b", "k") is not None


def test_reap_index_finds_queued_tasks_past_their_resend_deadline(store: TaskStore) -> None:
    task = new_task()
    store.create(task)

    def unclaimed(at: datetime) -> list[Task]:
        return [t for t in store.unclaimed(at) if t.id == task.id]

    # Before the deadline (resend_after_s=1 in these settings) nothing is unclaimed
    assert not unclaimed(NOW)
    later = NOW + timedelta(seconds=2)
    assert [t.status for t in unclaimed(later)] == [Status.QUEUED]
    # Once claimed it is no longer a lost enqueue
    claimed = store.get(task.id)
    claimed.claim(1, "h:1", NOW, 30)
    store.commit(claimed)
    assert not unclaimed(later)


def test_a_paused_task_leaves_the_due_index_and_resumed_comes_back_at_its_next_slot(
    store: TaskStore,
) -> None:
    # Given an every-minute task waiting for its first slot at NOW + 1 min
    task = new_task(schedule={"every_s": 60, "start_at": (NOW + timedelta(minutes=1)).isoformat()})
    store.create(task)
    later = NOW + timedelta(minutes=10)

    def found() -> list[datetime | None]:
        return [t.wake_at for t in store.due(NOW - timedelta(minutes=1), later) if t.id == task.id]

    assert found() == [NOW + timedelta(minutes=1)]
    # When it is paused, the scheduler's pass cannot find it (the same keys file it for the sweep: none)
    task = mutate(store, store.get(task.id), lambda t: t.pause("alice", NOW + timedelta(seconds=1)))
    assert found() == []
    assert store.get(task.id).status is Status.PAUSED
    # When it is resumed at NOW + 5 min, it is due again at its next slot (NOW + 6 min)
    mutate(store, task, lambda t: t.resume("alice", NOW + timedelta(minutes=5)))
    assert found() == [NOW + timedelta(minutes=6)]


def test_a_queued_run_withdrawn_by_a_pause_is_never_re_sent_and_waits_in_no_index(store: TaskStore) -> None:
    # Given an every-minute task whose first run is queued at once (the reaper re-sends it if nobody claims it)
    task = new_task(schedule={"every_s": 60})
    store.create(task)
    later, resend = NOW + timedelta(minutes=10), NOW + timedelta(seconds=2)
    assert [t.id for t in store.unclaimed(resend) if t.id == task.id] == [task.id]
    # When it is paused before an executor claims it
    paused = mutate(store, store.get(task.id), lambda t: t.pause("alice", NOW + timedelta(seconds=1)))
    # Then it is paused at once, and neither the reaper nor the scheduler finds it
    assert store.get(task.id).status is Status.PAUSED
    assert [t.id for t in store.unclaimed(resend) if t.id == task.id] == []
    assert [t.id for t in store.due(NOW - timedelta(minutes=1), later) if t.id == task.id] == []
    # And resumed, it is due at its next slot (its withdrawn first slot at NOW was missed while paused)
    mutate(store, paused, lambda t: t.resume("alice", NOW + timedelta(seconds=30)))
    assert [t.wake_at for t in store.due(NOW - timedelta(minutes=1), later) if t.id == task.id] == [
        NOW + timedelta(minutes=1)
    ]


def test_the_sweep_finds_every_overdue_waiting_task_however_old_and_no_queued_one(store: TaskStore) -> None:
    # Given a sweep that ran two days ago (its mark is then), tasks written then, due then and due a day from now,
    # and one queued
    long_ago = NOW - timedelta(days=2)
    assert list(store.overdue(long_ago)) == []

    def scheduled(at: datetime) -> Task:
        cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", "schedule": {"at": at.isoformat()}})
        body = cmd.model_dump(mode="json")
        return Task.submit(task_id=new_task_id(), owner="alice", now=long_ago, submitted=body, **cmd.task_fields())

    overdue, future, queued = (
        scheduled(long_ago + timedelta(seconds=30)),
        scheduled(NOW + timedelta(days=1)),
        new_task(),
    )
    for task in (overdue, future, queued):
        store.create(task)
    mine = {overdue.id, future.id, queued.id}

    def swept(before: datetime) -> list[str]:
        return [t.id for t in store.overdue(before) if t.id in mine]

    # Then a sweep before now finds the two-day-old one only, and none before its time
    assert swept(NOW) == [overdue.id]
    assert swept(long_ago + timedelta(seconds=30)) == []
    # and once it is queued, it has left the sweep
    found = store.get(overdue.id)
    found.on_due(NOW, starting_deadline_s=3600, actor="scheduler")
    store.commit(found)
    assert swept(NOW + timedelta(days=2)) == [future.id]


def expired_leases(store: TaskStore, task_id: str, at: datetime) -> list[LeaseRecord]:
    return [lease for lease in store.lease_expired(at) if lease.task_id == task_id]


def running_task(store: TaskStore) -> tuple[Task, int]:
    """A task created and claimed (a 30 s lease from ``NOW``), and its claim's token."""
    task = new_task()
    store.create(task)
    claimed = store.get(task.id)
    claimed.claim(1, "h:1", NOW, 30)
    store.commit(claimed)
    assert claimed.claim_seq is not None
    return claimed, claimed.claim_seq


def test_a_claim_takes_a_lease_that_heartbeats_extend_and_only_its_holder_can(store: TaskStore) -> None:
    # Given a claimed task with a 30 s lease
    task, claim = running_task(store)
    # Then its lease expires 30 s after the claim
    assert store.get(task.id).lease_expires_at == NOW + timedelta(seconds=30)
    assert not expired_leases(store, task.id, NOW + timedelta(seconds=29))
    assert [lease.worker for lease in expired_leases(store, task.id, NOW + timedelta(seconds=31))] == ["h:1"]
    # When its holder heartbeats, the lease moves (no new version, no event)
    version = store.get(task.id).version
    assert store.extend_lease(task.id, claim, NOW + timedelta(seconds=60)) is LeaseState.HELD
    assert store.get(task.id).lease_expires_at == NOW + timedelta(seconds=60)
    assert store.get(task.id).version == version
    assert not expired_leases(store, task.id, NOW + timedelta(seconds=31))
    # and a heartbeat for another claim is refused
    assert store.extend_lease(task.id, claim + 1, NOW + timedelta(seconds=90)) is LeaseState.LOST


def test_a_reclaim_wins_over_a_late_heartbeat_and_loses_to_an_early_one(store: TaskStore) -> None:
    task, claim = running_task(store)
    later = NOW + timedelta(seconds=31)
    # Given the reaper saw the lease expired, but the holder's heartbeat lands before the reclaim
    stale_view = store.get(task.id)
    assert store.extend_lease(task.id, claim, NOW + timedelta(seconds=60)) is LeaseState.HELD
    stale_view.expire_lease(later, jitter=0.0)
    # Then the reclaim is refused and the attempt keeps running
    with pytest.raises(LeaseHeld):
        store.commit(stale_view, lease_expired_before=later)
    assert store.get(task.id).status is Status.RUNNING
    # When the lease really runs out, the reclaim removes it and a late heartbeat is refused
    much_later = NOW + timedelta(seconds=61)
    reclaimed = store.get(task.id)
    reclaimed.expire_lease(much_later, jitter=0.0)
    store.commit(reclaimed, lease_expired_before=much_later)
    assert store.get(task.id).status is Status.RETRYING
    assert not expired_leases(store, task.id, much_later)
    assert store.extend_lease(task.id, claim, NOW + timedelta(seconds=120)) is LeaseState.LOST
    assert [e.type.value for e in store.events(task.id)][-3:] == ["lease_expired", "failed", "retry_scheduled"]


def test_index_walks_page_through_more_than_a_page_of_due_tasks(settings: CoreSettings) -> None:
    # Given a store that reads the index 5 items a page, and 40 unclaimed tasks (over its 4 shards)
    store = DynamoTaskStore(aws.client(settings, "dynamodb"), settings, page_size=5)
    made = [new_task() for _ in range(40)]
    for task in made:
        store.create(task)
    later = NOW + timedelta(seconds=5)
    # Then walking every shard finds every one of them
    found = list(store.unclaimed(later))
    assert sorted(t.id for t in found) == sorted(t.id for t in made)


@MOTO_UPDATE_SIZES_WRONG
def test_a_too_large_task_is_refused_with_a_domain_error(dynamo_store: DynamoTaskStore) -> None:
    store = dynamo_store
    task = new_task(payload="x" * 250_000)
    store.create(task)
    running = store.get(task.id)
    running.claim(1, "h:1", NOW, 30)
    store.commit(running)
    stored = store.get(task.id)
    stored.succeed(1, "h:1", "y" * 250_000, NOW)
    with pytest.raises(TaskTooLarge):
        store.commit(stored)
    assert store.get(task.id).status is Status.RUNNING


def test_history_items_and_an_ended_task_carry_a_ttl_of_the_retention_period(emulator: str) -> None:
    from tqcore.bootstrap import bootstrap
    from tqdev.stack import unique_prefix

    settings = CoreSettings(endpoint_url=emulator, prefix=unique_prefix(), history_retention_days=7)
    bootstrap(settings)
    client = aws.client(settings, "dynamodb")
    # A task item that keeps two events inline, so the third commit moves the first two into history items
    store = DynamoTaskStore(client, settings, inline_events=2)
    task = new_task()
    store.create(task)

    def ttl_by_sk() -> dict[str, int | None]:
        items = [
            item
            for pk in (keys.task_pk(task.id), keys.history_pk(task.id, 0))
            for item in client.query(
                TableName=settings.table_name,
                KeyConditionExpression="PK = :pk",
                ExpressionAttributeValues={":pk": {"S": pk}},
                ConsistentRead=True,
            )["Items"]
        ]
        return {i["SK"]["S"]: int(i[keys.TTL_ATTRIBUTE]["N"]) if keys.TTL_ATTRIBUTE in i else None for i in items}

    week = 7 * 86400
    assert ttl_by_sk() == {keys.SNAPSHOT_SK: None}  # a live task never expires; its events are in its item
    ended_at = NOW + timedelta(hours=1)
    mutate(store, store.get(task.id), lambda t: t.request_cancel("alice", ended_at))
    # An ended task expires with the events inline in it; history items expire by when they were written
    assert ttl_by_sk() == {
        keys.SNAPSHOT_SK: int(ended_at.timestamp()) + week,
        keys.event_sk(1): int(NOW.timestamp()) + week,
        keys.event_sk(2): int(NOW.timestamp()) + week,
    }
    assert [e.seq for e in store.events(task.id)] == [1, 2, 3]


def test_a_cancel_request_flags_the_lease_and_the_next_heartbeat_sees_it(store: TaskStore) -> None:
    # Given a running attempt
    task, claim = running_task(store)
    assert store.extend_lease(task.id, claim, NOW + timedelta(seconds=40)) is LeaseState.HELD
    # When a user cancels it (one commit: snapshot, event and the lease's flag together)
    mutate(store, store.get(task.id), lambda t: t.request_cancel("alice", NOW + timedelta(seconds=5)))
    # Then the next heartbeat still extends the lease and tells the attempt to stop
    assert store.extend_lease(task.id, claim, NOW + timedelta(seconds=50)) is LeaseState.CANCEL_REQUESTED
    assert store.get(task.id).lease_expires_at == NOW + timedelta(seconds=50)
    # and a second DELETE changes nothing
    again = mutate(store, store.get(task.id), lambda t: t.request_cancel("alice", NOW + timedelta(seconds=6)))
    assert [e.type.value for e in store.events(task.id)].count("cancel_requested") == 1
    # When the attempt acknowledges, the task ends cancelled and the lease goes with the commit
    done = mutate(store, again, lambda t: t.acknowledge_cancel(1, "h:1", NOW + timedelta(seconds=7), claim_seq=claim))
    assert done.status is Status.CANCELLED
    assert store.extend_lease(task.id, claim, NOW + timedelta(seconds=60)) is LeaseState.LOST
    cancelled = store.events(task.id)[-1]
    assert (cancelled.type.value, cancelled.actor) == ("cancelled", "executor:h:1")


def test_a_task_with_more_events_than_its_item_keeps_has_its_whole_history_in_order(store: TaskStore) -> None:
    # Given a task changed far more often than its item keeps events inline (a long-lived task)
    task = new_task()
    store.create(task)
    current = store.get(task.id)
    for n in range(45):
        current = mutate(store, current, lambda t, n=n: t.update({"description": f"change {n}"}, "alice", NOW))
    # Then every event is still there, numbered 1..version, oldest first, none twice
    final = store.get(task.id)
    events = store.events(task.id)
    assert final.version == 2 + 45
    assert [e.seq for e in events] == list(range(1, final.version + 1))
    assert [e.type.value for e in events[:3]] == ["submitted", "queued", "updated"]
    assert final.description == "change 44"


def test_events_move_out_of_the_task_item_a_batch_at_a_time(settings: CoreSettings) -> None:
    # Given a store whose task items keep 4 events inline, and a task counting its write calls
    client = aws.client(settings, "dynamodb")
    store = DynamoTaskStore(client, settings, inline_events=4)
    writes = WriteLog(client)
    task = new_task()
    store.create(task)
    current = store.get(task.id)
    for n in range(10):
        current = mutate(store, current, lambda t, n=n: t.update({"description": f"change {n}"}, "alice", NOW))
    # Then the 12 events are in order across history items and the item; the item never held more than 4
    assert [e.seq for e in store.events(task.id)] == list(range(1, 13))
    item = client.get_item(TableName=settings.table_name, Key=task_key(task.id), ConsistentRead=True)["Item"]
    assert len(item["evts"]["L"]) == int(item["evn"]["N"]) <= 4
    history = client.query(
        TableName=settings.table_name,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :evt)",
        ExpressionAttributeValues={":pk": {"S": keys.history_pk(task.id, 0)}, ":evt": {"S": "EVT#"}},
        ConsistentRead=True,
    )["Items"]
    assert len(history) + len(item["evts"]["L"]) == 12
    # and moving them cost one transaction per 4 events (the item and the 4 history items), every other change
    # one single-item write
    assert [n for n in writes.items_per_write() if n > 1] == [5, 5]
    assert len(history) == 8


def test_a_stale_commit_on_a_full_task_item_is_refused_with_the_current_task_and_moves_nothing(
    settings: CoreSettings,
) -> None:
    store = DynamoTaskStore(aws.client(settings, "dynamodb"), settings, inline_events=3)
    task = new_task()
    store.create(task)
    stale = store.get(task.id)
    # Given the item is full (3 events inline) and changed since ``stale`` was read
    mutate(store, store.get(task.id), lambda t: t.update({"description": "winner"}, "w", NOW))
    stale.update({"description": "loser"}, "l", NOW)
    # Then the stale commit is refused with the winner's task, and the history is unchanged
    with pytest.raises(VersionConflict) as refused:
        store.commit(stale)
    assert refused.value.current is not None
    assert refused.value.current.description == "winner"
    assert [(e.seq, e.actor) for e in store.events(task.id)][-1] == (3, "w")


def test_a_commit_never_moves_back_a_lease_a_heartbeat_extended_after_its_read(store: TaskStore) -> None:
    # Given a running attempt, read by a user before its holder's heartbeat
    task, claim = running_task(store)
    before_beat = store.get(task.id)
    assert store.extend_lease(task.id, claim, NOW + timedelta(seconds=90)) is LeaseState.HELD
    # When the user's change commits (after the beat) from what it read before it
    before_beat.update({"description": "changed while running"}, "alice", NOW)
    store.commit(before_beat)
    # Then the lease keeps the heartbeat's expiry: no reaper finds it expired before then
    assert store.get(task.id).lease_expires_at == NOW + timedelta(seconds=90)
    assert not expired_leases(store, task.id, NOW + timedelta(seconds=60))
    assert store.extend_lease(task.id, claim, NOW + timedelta(seconds=120)) is LeaseState.HELD


@MOTO_TRANSACTIONS_NOT_ATOMIC
def test_heartbeats_racing_commits_leave_the_last_beats_expiry(store: TaskStore) -> None:
    # Given a running attempt whose holder beats while users change the task, both at full speed
    task, claim = running_task(store)
    beats = [NOW + timedelta(seconds=31 + n) for n in range(20)]
    barrier = threading.Barrier(2)

    def beat() -> None:
        barrier.wait()
        for until in beats:
            assert store.extend_lease(task.id, claim, until) is LeaseState.HELD

    def change() -> None:
        barrier.wait()
        for n in range(10):
            mutate(store, store.get(task.id), lambda t, n=n: t.update({"description": f"c{n}"}, "alice", NOW))

    threads = [threading.Thread(target=beat), threading.Thread(target=change)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then the lease is the last beat's, the changes all landed, and the history is whole
    final = store.get(task.id)
    assert final.lease_expires_at == beats[-1]
    assert (final.status, final.description, final.version) == (Status.RUNNING, "c9", 3 + 10)
    assert [e.seq for e in store.events(task.id)] == list(range(1, final.version + 1))


@MOTO_TRANSACTIONS_NOT_ATOMIC
def test_concurrent_submits_with_one_key_create_one_task(store: TaskStore) -> None:
    # Given eight submits of different tasks under one idempotency key, released at once
    barrier = threading.Barrier(8)
    created: list[str] = []
    refused: list[IdempotencyRecord | None] = []

    def submit() -> None:
        task = new_task(idempotency_key="race")
        barrier.wait()
        try:
            store.create(task, IdempotencyRecord("team-a", "race", "fp", task.id))
            created.append(task.id)
        except DuplicateRequest as duplicate:
            refused.append(duplicate.record)
        except VersionConflict:
            refused.append(None)  # a concurrent transaction on the key: the caller reads the record and retries

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one task was created, the key names it, and every other submit was refused
    assert len(created) == 1
    assert len(refused) == 7
    record = store.idempotency_record("team-a", "race")
    assert record is not None
    assert record.task_id == created[0]
    assert all(r is None or r.task_id == created[0] for r in refused)


def test_each_state_change_of_an_ordinary_task_writes_one_item(settings: CoreSettings) -> None:
    # Given a store whose DynamoDB calls are logged
    client = aws.client(settings, "dynamodb")
    store = DynamoTaskStore(client, settings)
    writes = WriteLog(client)
    # When a task is submitted, claimed, beaten once and succeeds
    task = new_task()
    store.create(task)
    claimed = task.committed()
    claimed.claim(1, "h:1", NOW, 30)
    store.commit(claimed)
    assert claimed.claim_seq is not None
    assert store.extend_lease(task.id, claimed.claim_seq, NOW + timedelta(seconds=60)) is LeaseState.HELD
    done = claimed.committed()
    done.succeed(1, "h:1", {"ok": True}, NOW, claim_seq=claimed.claim_seq)
    store.commit(done)
    # Then each of the four writes touched one item, and none read or returned the task's history
    assert writes.items_per_write() == [1, 1, 1, 1]
    assert all("evts" not in answer and "doc" not in answer for answer in writes.heartbeat_answers)
    assert [e.type.value for e in store.events(task.id)] == ["submitted", "queued", "claimed", "succeeded"]
    # and a keyed submit is the task item and its idempotency record, one unkeyed submit a single item
    writes.calls.clear()
    keyed = new_task(idempotency_key="k")
    store.create(keyed, IdempotencyRecord("team-a", "k", "fp", keyed.id))
    assert writes.items_per_write() == [2]


def task_key(task_id: str) -> dict[str, Any]:
    return {"PK": {"S": f"TASK#{task_id}"}, "SK": {"S": "TASK"}}


class WriteLog:
    """The write calls a DynamoDB client makes, seen through botocore's own event hooks (no mock)."""

    WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")

    def __init__(self, client: Any) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.heartbeat_answers: list[dict[str, Any]] = []
        client.meta.events.register("provide-client-params.dynamodb.*", self._before)
        client.meta.events.register("after-call.dynamodb.UpdateItem", self._after_update)

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in self.WRITES:
            self.calls.append((model.name, params))

    def _after_update(self, parsed: dict[str, Any], **_: Any) -> None:
        self.heartbeat_answers.append(parsed.get("Attributes", {}))

    def items_per_write(self) -> list[int]:
        """Items each write call wrote (a transaction's items, one for a single-item write)."""
        return [len(params["TransactItems"]) if name == "TransactWriteItems" else 1 for name, params in self.calls]


def test_progress_is_kept_beside_the_snapshot_fenced_by_the_claim_and_cleared_by_the_next_claim(
    store: TaskStore,
) -> None:
    # Given a claimed task
    task, claim = running_task(store)
    version = store.get(task.id).version
    assert store.get(task.id).progress is None
    # When its attempt reports progress twice
    first = Progress(0.25, "a quarter", NOW + timedelta(seconds=1))
    newest = Progress(0.5, "half way", NOW + timedelta(seconds=2))
    assert store.report_progress(task.id, claim, first)
    assert store.report_progress(task.id, claim, newest)
    # Then a read shows the newest, without a new version or an event
    got = store.get(task.id)
    assert (got.progress, got.version) == (newest, version)
    assert len(store.events(task.id)) == version
    # and a report of another claim is refused
    assert not store.report_progress(task.id, claim + 1, Progress(0.9, "stale", NOW + timedelta(seconds=3)))
    assert store.get(task.id).progress == newest
    # When the attempt fails, its last report stays readable, and a late report is refused
    ended = store.get(task.id)
    ended.fail(1, "h:1", ErrorInfo("ValueError", "boom"), NOW + timedelta(seconds=4), jitter=0.0)
    store.commit(ended)
    assert store.get(task.id).progress == newest
    assert not store.report_progress(task.id, claim, Progress(1.0, "too late", NOW + timedelta(seconds=5)))
    # When the next attempt is claimed, it starts without a report
    retry = store.get(task.id)
    assert retry.next_run_at is not None
    retry.promote(retry.next_run_at)
    retry.claim(2, "h:2", retry.next_run_at or NOW, 30)
    store.commit(retry)
    assert store.get(task.id).progress is None
