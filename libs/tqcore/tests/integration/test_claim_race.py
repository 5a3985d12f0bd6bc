"""Seed 002 (c): two executors racing to claim one task against a real emulator: exactly one runs it."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tqcore.adapters import aws
from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import SystemClock, new_task_id
from tqcore.dispatch import Dispatch
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import VersionConflict
from tqcore.domain.model import EventType, Status
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings
from tqcore.usecases.execution import Attempts

pytestmark = pytest.mark.integration

#: moto 5.2.5's TransactWriteItems checks conditions and writes without a lock (and rolls back by restoring a
#: copy of the table), so concurrent transactions can both commit there. ministack, like DynamoDB, serialises
#: them; these races are proved on ministack and only skipped on moto.
MOTO_TRANSACTIONS_NOT_ATOMIC = pytest.mark.skipif(
    os.environ.get("TQ_TEST_EMULATOR") == "moto", reason="moto's TransactWriteItems is not atomic under concurrency"
)

ROUNDS = 20


class ConflictLog(DynamoTaskStore):
    """The real store, remembering every ``VersionConflict`` its commits raised (a spy, not a mock)."""

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        super().__init__(client, settings)
        self.conflicts: list[VersionConflict] = []
        self._lock = threading.Lock()

    def commit(self, task: Task, *, lease_expired_before: datetime | None = None) -> None:
        try:
            super().commit(task, lease_expired_before=lease_expired_before)
        except VersionConflict as conflict:
            with self._lock:
                self.conflicts.append(conflict)
            raise


def queued_task(store: DynamoTaskStore) -> Task:
    cmd = SubmitTask(type="echo", group="team-a", payload={"race": True})
    task = Task.submit(
        task_id=new_task_id(),
        owner="alice",
        now=datetime.now(UTC),
        submitted=cmd.model_dump(mode="json"),
        **cmd.task_fields(),
    )
    store.create(task)
    return task.committed()


@MOTO_TRANSACTIONS_NOT_ATOMIC
def test_c_two_workers_racing_to_claim_one_wins(settings: CoreSettings) -> None:
    store = ConflictLog(aws.client(settings, "dynamodb"), settings)
    queue = SqsTaskQueue(aws.client(settings, "sqs"), settings)
    workers = {
        name: Attempts(store, queue, SystemClock(), worker=name, lease_s=settings.lease_s)
        for name in ("host-a:101", "host-b:202")
    }
    for round_no in range(ROUNDS):
        # Given a queued task and one dispatch of it, delivered to two executors (a duplicate delivery)
        task = queued_task(store)
        dispatch = Dispatch.of(task)
        barrier = threading.Barrier(2)
        claims: dict[str, Task | None] = {}
        conflicts_before = len(store.conflicts)

        def claim(
            name: str,
            dispatch: Dispatch = dispatch,
            barrier: threading.Barrier = barrier,
            claims: dict[str, Task | None] = claims,
        ) -> None:
            barrier.wait()
            claims[name] = workers[name].claim(dispatch)

        # When both claim at the same instant
        threads = [threading.Thread(target=claim, args=(name,)) for name in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Then exactly one claim returns the task; the other returns None (its message is acknowledged unrun)
        winners = [name for name, claimed in claims.items() if claimed is not None]
        assert len(claims) == 2, f"round {round_no}: {claims}"
        assert len(winners) == 1, f"round {round_no}: {claims}"
        (winner,) = winners
        stored = store.get(task.id)
        assert (stored.status, stored.worker, stored.attempts) == (Status.RUNNING, winner, 1)
        # and the history holds exactly one claim, by the winner, at the version after the dispatch's
        events = store.events(task.id)
        claimed_events = [e for e in events if e.type is EventType.CLAIMED]
        assert [(e.seq, e.data["worker"]) for e in claimed_events] == [(dispatch.version + 1, winner)]
        assert [e.seq for e in events] == list(range(1, stored.version + 1))
        # and the loser's conditional commit was refused; when DynamoDB handed back the current item
        # (ALL_OLD), it was the winner's claim, which the domain then refused to claim again
        lost = store.conflicts[conflicts_before:]
        assert lost, f"round {round_no}: no commit was refused"
        for conflict in lost:
            if conflict.current is not None:
                assert (conflict.current.status, conflict.current.worker) == (Status.RUNNING, winner)


def test_c_the_loser_of_the_conditional_transaction_gets_conditional_check_failed(settings: CoreSettings) -> None:
    ddb = aws.client(settings, "dynamodb")
    store = DynamoTaskStore(ddb, settings)
    # Given a task at version 3 (submitted, queued, claimed by the winner)
    task = queued_task(store)
    winner = Attempts(
        store, SqsTaskQueue(aws.client(settings, "sqs"), settings), SystemClock(), worker="w:1", lease_s=30
    )
    assert winner.claim(Dispatch.of(task)) is not None
    # When the loser commits its claim conditioned on the version it read (2), as the adapter does
    key = {"PK": {"S": keys.task_pk(task.id)}, "SK": {"S": keys.SNAPSHOT_SK}}
    with pytest.raises(ClientError) as refused:
        ddb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": settings.table_name,
                        "Item": {**key, "version": {"N": "3"}, "status": {"S": "running"}, "worker": {"S": "w:2"}},
                        "ConditionExpression": "version = :expected",
                        "ExpressionAttributeValues": {":expected": {"N": str(task.version)}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
                {
                    "Put": {
                        "TableName": settings.table_name,
                        "Item": {"PK": key["PK"], "SK": {"S": keys.event_sk(3)}, "doc": {"S": "{}"}},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
            ]
        )
    # Then DynamoDB cancels the whole transaction: the snapshot's condition failed, with the current item
    error: Any = refused.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    reasons = error["CancellationReasons"]
    assert reasons[0]["Code"] == "ConditionalCheckFailed"
    assert reasons[0]["Item"]["version"] == {"N": "3"}
    assert reasons[0]["Item"]["worker"] == {"S": "w:1"}
    # and nothing of it was written: the winner's snapshot and event stand
    stored = store.get(task.id)
    assert (stored.version, stored.worker) == (3, "w:1")
    assert [e.type for e in store.events(task.id)][-1] is EventType.CLAIMED
