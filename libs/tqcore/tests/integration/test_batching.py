"""Writes and sends shared across concurrent callers, against a real emulator (through tqdev.faults' proxy where
a test must hold a first call in flight so that the next ones queue behind it and go out together)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.batching import TransactionBatcher
from tqcore.adapters.dynamodb.table import Table
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.bootstrap import bootstrap
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.task import Task
from tqcore.errors import QueueUnavailable, StoreUnavailable
from tqcore.settings import CoreSettings
from tqdev.faults import Fault, FaultProxy
from tqdev.procs import wait_until
from tqdev.stack import unique_prefix

pytestmark = pytest.mark.integration

WRITES = ("TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem")


@pytest.fixture
def proxy(emulator: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=emulator) as started:
        yield started


@pytest.fixture
def via_proxy(proxy: FaultProxy) -> CoreSettings:
    made = CoreSettings(endpoint_url=proxy.url, prefix=unique_prefix(), write_max_inflight=1, send_max_inflight=1)
    bootstrap(made)
    return made


@pytest.fixture
def batcher(via_proxy: CoreSettings) -> TransactionBatcher:
    """One flush at a time: what arrives while it is in flight waits for the next."""
    return TransactionBatcher.from_settings(aws.client(via_proxy, "dynamodb"), via_proxy)


def new_task() -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a"})
    return Task.submit(task_id=new_task_id(), owner="alice", now=_now(), submitted={}, **cmd.task_fields())


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def key(pk: str) -> dict[str, Any]:
    return {"PK": {"S": pk}, "SK": {"S": "T"}}


def put(table: str, pk: str, *, new: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"TableName": table, "Item": {**key(pk), "version": {"N": "1"}}}
    if new:
        body |= {"ConditionExpression": "attribute_not_exists(PK)", "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
    return {"Put": body}


def bump(table: str, pk: str, expected: int) -> dict[str, Any]:
    """Move an item from version ``expected`` to the next."""
    return {
        "Update": {
            "TableName": table,
            "Key": key(pk),
            "UpdateExpression": "SET version = :next",
            "ConditionExpression": "version = :expected",
            "ExpressionAttributeValues": {":expected": {"N": str(expected)}, ":next": {"N": str(expected + 1)}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def outcome(future: Future[Any]) -> Any:
    try:
        return future.result(60)
    except Exception as error:  # the test compares errors like results
        return error


def together(
    proxy: FaultProxy,
    send: Callable[[Any], Any],
    waiting: Callable[[], int],
    requests: list[Any],
    *,
    blocker: Any,
    operation: str,
) -> list[Any]:
    """Send ``requests`` from threads while ``blocker``'s call (``operation``, delayed by the proxy) holds the
    only flush slot, so they all queue and go out in the next flushes; their outcomes, in order."""
    rule = proxy.inject(Fault.latency(1.5), operation=operation, times=1)
    with ThreadPoolExecutor(len(requests) + 1) as pool:
        first = pool.submit(send, blocker)
        wait_until(lambda: rule.hits == 1, 30, "the first call reaches the proxy", interval_s=0.005)
        futures = [pool.submit(send, request) for request in requests]
        wait_until(lambda: waiting() == len(requests), 30, "every request queued", interval_s=0.005)
        assert outcome(first) is None
        return [outcome(future) for future in futures]


def writes(proxy: FaultProxy, since: dict[tuple[str, str], int]) -> Counter[str]:
    now = proxy.calls
    return Counter({op: now.get(("dynamodb", op), 0) - since.get(("dynamodb", op), 0) for op in WRITES})


def exists(settings: CoreSettings, pk: str) -> bool:
    found = aws.client(settings, "dynamodb").get_item(TableName=settings.table_name, Key=key(pk), ConsistentRead=True)
    return "Item" in found


def test_many_threads_committing_distinct_tasks_make_fewer_write_calls_than_commits(settings: CoreSettings) -> None:
    # Given one store (one batcher) shared by 32 threads, and every write call counted by a botocore hook
    client = aws.client(settings, "dynamodb")
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.update([model.name]))
    store = DynamoTaskStore(client, settings)
    tasks = [new_task() for _ in range(96)]
    start = threading.Barrier(32)

    def create(chunk: list[Task]) -> None:
        start.wait()
        for task in chunk:
            store.create(task)

    # When they create 96 tasks at once
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(create, [tasks[n::32] for n in range(32)]))
    # Then fewer write calls than commits carried them, and each task is whole
    made = sum(calls[op] for op in WRITES)
    print(f"\n96 creates from 32 threads: {made} write calls ({dict(calls)})")
    assert made < len(tasks)
    for task in tasks:
        assert store.get(task.id).version == 2
        assert [e.seq for e in store.events(task.id)] == [1, 2]


def test_groups_whose_conditions_fail_get_their_reasons_and_the_others_commit(
    proxy: FaultProxy, via_proxy: CoreSettings, batcher: TransactionBatcher
) -> None:
    table = via_proxy.table_name
    for pk in ("old", "older"):
        Table(aws.client(via_proxy, "dynamodb"), table).call(
            "put_item", TableName=table, Item={**key(pk), "version": {"N": "5"}}
        )
    groups = [
        [put(table, "n1")],
        [put(table, "old")],  # taken: fails with the current item
        [put(table, "n2"), put(table, "n3")],
        [put(table, "n4"), bump(table, "older", expected=1)],  # stale version: fails, and n4 with it
        [put(table, "n5")],
    ]
    before = proxy.calls
    first, taken, pair, stale, last = together(
        proxy, batcher.transact, lambda: batcher.waiting, groups, blocker=[put(table, "blocker")], operation="PutItem"
    )
    # The ones without a failed condition committed
    assert (first, pair, last) == (None, None, None)
    assert all(exists(via_proxy, pk) for pk in ("n1", "n2", "n3", "n5"))
    # A failed group has one reason per item, in its order, the failed one with the item as it is
    assert [r["Code"] for r in taken] == ["ConditionalCheckFailed"]
    assert taken[0]["Item"]["version"] == {"N": "5"}
    assert [r["Code"] for r in stale] == ["None", "ConditionalCheckFailed"]
    assert stale[1]["Item"]["version"] == {"N": "5"}
    assert not exists(via_proxy, "n4")
    # One transaction for the five groups, one more for the three that did not fail
    assert writes(proxy, before) == Counter({"PutItem": 1, "TransactWriteItems": 2})


def test_two_groups_on_one_key_in_one_window_one_wins_and_the_other_conflicts(
    proxy: FaultProxy, via_proxy: CoreSettings, batcher: TransactionBatcher
) -> None:
    table = via_proxy.table_name
    Table(aws.client(via_proxy, "dynamodb"), table).call(
        "put_item", TableName=table, Item={**key("x"), "version": {"N": "1"}}
    )
    groups = [[bump(table, "x", 1), put(table, "a")], [put(table, "other")], [bump(table, "x", 1), put(table, "b")]]
    before = proxy.calls
    won, other, lost = together(
        proxy, batcher.transact, lambda: batcher.waiting, groups, blocker=[put(table, "blocker")], operation="PutItem"
    )
    assert (won, other) == (None, None)
    assert [r["Code"] for r in lost] == ["ConditionalCheckFailed", "None"]
    assert lost[0]["Item"]["version"] == {"N": "2"}
    assert (exists(via_proxy, "a"), exists(via_proxy, "b")) == (True, False)
    # The later group on x waited for the next flush (DynamoDB refuses a transaction touching an item twice)
    assert writes(proxy, before) == Counter({"PutItem": 1, "TransactWriteItems": 2})


def test_a_lone_item_is_its_plain_call_with_the_same_condition_and_reasons(
    proxy: FaultProxy, via_proxy: CoreSettings, batcher: TransactionBatcher
) -> None:
    table = via_proxy.table_name
    before = proxy.calls
    assert batcher.transact([put(table, "p")]) is None
    assert batcher.transact([bump(table, "p", 1)]) is None
    taken = batcher.transact([put(table, "p")])
    stale = batcher.transact([bump(table, "p", 1)])
    assert writes(proxy, before) == Counter({"PutItem": 2, "UpdateItem": 2})
    assert taken is not None
    assert stale is not None
    assert [(r["Code"], r["Item"]["version"]) for r in taken + stale] == [("ConditionalCheckFailed", {"N": "2"})] * 2


def test_a_lone_put_whose_answer_was_lost_is_taken_for_what_it_is(
    proxy: FaultProxy, via_proxy: CoreSettings, batcher: TransactionBatcher
) -> None:
    # Given the put is applied but its answer lost (botocore sends it again; its condition then fails)
    rule = proxy.inject(Fault.reset(after_forward=True), service="dynamodb", operation="PutItem", times=1)
    assert batcher.transact([put(via_proxy.table_name, "lost")]) is None
    assert rule.hits == 1
    assert proxy.calls[("dynamodb", "PutItem")] == 2
    assert exists(via_proxy, "lost")


@pytest.mark.parametrize("operation", ["TransactWriteItems", "PutItem"])
def test_throttling_is_store_unavailable(
    proxy: FaultProxy, via_proxy: CoreSettings, batcher: TransactionBatcher, operation: str
) -> None:
    proxy.inject(Fault.error("ThrottlingException"), service="dynamodb", operation=operation)
    table = via_proxy.table_name
    items = [put(table, "t1"), put(table, "t2")] if operation == "TransactWriteItems" else [put(table, "t1")]
    with pytest.raises(StoreUnavailable):
        batcher.transact(items)


@pytest.fixture
def sends(via_proxy: CoreSettings) -> tuple[SqsTaskQueue, Any]:
    sqs = aws.client(via_proxy, "sqs")
    return SqsTaskQueue(sqs, via_proxy), sqs


def received(sqs: Any, settings: CoreSettings, expected: int) -> set[str]:
    url = sqs.get_queue_url(QueueName=settings.queue_name(new_task().priority))["QueueUrl"]
    groups: set[str] = set()
    for _ in range(20):
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"])
        groups |= {m["Attributes"]["MessageGroupId"] for m in answer.get("Messages", [])}
        if len(groups) >= expected:
            break
    return groups


def test_concurrent_sends_share_send_message_batch_calls(
    proxy: FaultProxy, via_proxy: CoreSettings, sends: tuple[SqsTaskQueue, Any]
) -> None:
    queue, sqs = sends
    first, tasks = new_task(), [new_task() for _ in range(12)]
    queue.send(new_task())  # the queue URL is looked up once
    before = proxy.calls
    outcomes = together(
        proxy,
        queue.send,
        lambda: queue._sender((first.pool, first.priority)).waiting,
        tasks,
        blocker=first,
        operation="SendMessage",
    )
    assert outcomes == [None] * 12
    calls = {
        op: proxy.calls.get(("sqs", op), 0) - before.get(("sqs", op), 0) for op in ("SendMessage", "SendMessageBatch")
    }
    assert calls == {"SendMessage": 1, "SendMessageBatch": 2}  # ten, then two
    assert {t.id for t in [first, *tasks]} <= received(sqs, via_proxy, 14)


def test_an_entry_sqs_refuses_fails_its_own_send_only(
    proxy: FaultProxy, via_proxy: CoreSettings, sends: tuple[SqsTaskQueue, Any]
) -> None:
    queue, sqs = sends
    first, tasks = new_task(), [new_task() for _ in range(4)]
    victim = tasks[2].id
    entry: dict[str, str] = {}

    def note(params: dict[str, Any], **_: Any) -> None:
        entry.update({e["Id"]: e["MessageGroupId"] for e in params["Entries"]})

    def refuse(parsed: dict[str, Any], **_: Any) -> None:
        (bad,) = [n for n, group in entry.items() if group == victim]
        parsed["Successful"] = [s for s in parsed["Successful"] if s["Id"] != bad]
        parsed["Failed"] = [{"Id": bad, "SenderFault": False, "Code": "InternalError", "Message": "refused"}]

    # Given SQS refuses the victim's entry of the shared batch (a hook on the real answer)
    sqs.meta.events.register("before-parameter-build.sqs.SendMessageBatch", note)
    sqs.meta.events.register("after-call.sqs.SendMessageBatch", refuse)
    queue.send(new_task())
    outcomes = together(
        proxy,
        queue.send,
        lambda: queue._sender((first.pool, first.priority)).waiting,
        tasks,
        blocker=first,
        operation="SendMessage",
    )
    # Then only the victim's send raises
    assert [type(o) for o in outcomes] == [type(None)] * 2 + [QueueUnavailable] + [type(None)]
    assert "refused" in str(outcomes[2])


def test_a_lone_commit_whose_answer_was_lost_is_taken_for_what_it_is(
    proxy: FaultProxy, via_proxy: CoreSettings, batcher: TransactionBatcher
) -> None:
    # Given a task, and a claim whose UpdateItem is applied but whose answer is lost (botocore sends it again; its
    # version condition then fails, and the item it hands back is the claim itself)
    store = DynamoTaskStore(aws.client(via_proxy, "dynamodb"), via_proxy, batcher=batcher)
    task = new_task()
    store.create(task)
    task = task.committed()
    task.claim(1, "host:1", _now(), 30)
    rule = proxy.inject(Fault.reset(after_forward=True), service="dynamodb", operation="UpdateItem", times=1)
    # When it commits, the commit holds (a conflict here would make the executor drop an attempt it owns)
    store.commit(task)
    assert rule.hits == 1
    assert proxy.calls[("dynamodb", "UpdateItem")] == 2
    # Then the claim is there once
    stored = store.get(task.id)
    assert (stored.status.value, stored.version, stored.claim_seq) == ("running", 3, 3)
    assert [event.seq for event in store.events(task.id)] == [1, 2, 3]


def test_a_lone_create_whose_answer_was_lost_is_taken_for_what_it_is(
    proxy: FaultProxy, via_proxy: CoreSettings, batcher: TransactionBatcher
) -> None:
    # Given a submit without an idempotency key (a lone PutItem, no ClientRequestToken) whose answer is lost
    store = DynamoTaskStore(aws.client(via_proxy, "dynamodb"), via_proxy, batcher=batcher)
    task = new_task()
    rule = proxy.inject(Fault.reset(after_forward=True), service="dynamodb", operation="PutItem", times=1)
    # When it is created, the create holds (a conflict would tell the client it failed while the task exists)
    store.create(task)
    assert rule.hits == 1
    assert proxy.calls[("dynamodb", "PutItem")] == 2
    assert [event.seq for event in store.events(task.id)] == [1, 2]
