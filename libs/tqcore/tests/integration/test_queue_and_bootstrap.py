"""SQS FIFO queues and the resource bootstrap against a real emulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tqcore.adapters import aws
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.bootstrap import bootstrap, create_table, global_secondary_indexes
from tqcore.clock import new_task_id
from tqcore.dispatch import Dispatch
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Priority
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def queued(priority: str = "normal") -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": "g", "priority": priority})
    task = Task.submit(task_id=new_task_id(), owner="u", now=NOW, submitted={}, **cmd.task_fields())
    return task.committed()


def receive_all(sqs: Any, url: str, *, visibility: int = 30) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while True:
        page = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=visibility,
            AttributeNames=["All"],
        ).get("Messages", [])
        if not page:
            return got
        got += page


def test_bootstrap_is_idempotent_and_creates_every_index_and_ttl(settings: CoreSettings) -> None:
    # Given resources already bootstrapped by the fixture, When bootstrapping again
    bootstrap(settings)
    # Then the table has the five indexes and TTL on expires_ttl
    ddb = aws.client(settings, "dynamodb")
    table = ddb.describe_table(TableName=settings.table_name)["Table"]
    assert sorted(i["IndexName"] for i in table["GlobalSecondaryIndexes"]) == [
        "by_group",
        "dlq",
        "due",
        "reap",
        "sched",
    ]
    ttl = ddb.describe_time_to_live(TableName=settings.table_name)["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "expires_ttl"
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING")


def test_bootstrap_adds_the_indexes_a_table_made_by_an_older_version_lacks(settings: CoreSettings) -> None:
    # Given a table made before the sched index existed
    ddb = aws.client(settings, "dynamodb")
    name = f"{settings.table_name}-old"
    older = [index for index in global_secondary_indexes() if index["IndexName"] != "sched"]
    used = sorted({"PK", "SK", *(key["AttributeName"] for index in older for key in index["KeySchema"])})
    ddb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in used],
        GlobalSecondaryIndexes=older,
    )
    # When bootstrap meets it
    create_table(ddb, name)
    # Then it has every index, the new one active
    table = ddb.describe_table(TableName=name)["Table"]
    indexes = {i["IndexName"]: i.get("IndexStatus", "ACTIVE") for i in table["GlobalSecondaryIndexes"]}
    assert indexes == dict.fromkeys(["by_group", "due", "reap", "dlq", "sched"], "ACTIVE")


def test_the_log_bucket_is_encrypted_and_not_public(settings: CoreSettings) -> None:
    s3 = aws.client(settings, "s3")
    rules = s3.get_bucket_encryption(Bucket=settings.bucket_name)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=settings.bucket_name)["PublicAccessBlockConfiguration"]
    assert all(block.values())


@pytest.mark.parametrize("priority", list(Priority))
def test_every_priority_has_a_fifo_queue_redriving_to_a_fifo_dlq(
    settings: CoreSettings, sqs: Any, priority: Priority
) -> None:
    url = sqs.get_queue_url(QueueName=settings.queue_name(priority))["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true"
    policy = json.loads(attrs["RedrivePolicy"])
    assert int(policy["maxReceiveCount"]) == settings.max_receives
    dlq_url = sqs.get_queue_url(QueueName=settings.dlq_name(priority))["QueueUrl"]
    dlq_attrs = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])["Attributes"]
    assert policy["deadLetterTargetArn"] == dlq_attrs["QueueArn"]
    assert dlq_attrs["FifoQueue"] == "true"


def test_the_same_enqueue_sent_twice_is_delivered_once(queue: SqsTaskQueue, sqs: Any) -> None:
    # Given one queued task sent twice (e.g. the gateway and then a re-send)
    task = queued()
    queue.send(task)
    queue.send(task)
    # Then SQS delivers one message, grouped by the task, that decodes to the dispatch of attempt 1
    messages = receive_all(sqs, queue.urls.queue(Priority.NORMAL))
    assert len(messages) == 1
    assert messages[0]["Attributes"]["MessageGroupId"] == task.id
    body = json.loads(messages[0]["Body"])
    dispatch = Dispatch.from_dict(body["args"][0])
    assert (dispatch.task_id, dispatch.attempt, dispatch.version) == (task.id, 1, task.version)


def test_a_re_send_of_a_message_sqs_holds_is_dropped_as_a_duplicate(queue: SqsTaskQueue, sqs: Any) -> None:
    # Given a task sent, then re-sent by the reaper as a new version (it waited in a backlog past its deadline)
    task = queued()
    queue.send(task)
    task.resend(NOW)
    queue.send(task.committed())
    # Then SQS holds one message: re-sends do not multiply a backlog
    assert len(receive_all(sqs, queue.urls.queue(Priority.NORMAL))) == 1


def test_a_new_enqueue_of_the_same_attempt_is_not_swallowed_as_a_duplicate(queue: SqsTaskQueue, sqs: Any) -> None:
    # Given a task sent, then sent again after SQS dead-lettered its message (the same attempt, a new enqueue)
    task = queued()
    queue.send(task)
    task.poisoned(1, 5, NOW, strikes_allowed=3)
    queue.send(task.committed())
    # Then both messages are delivered (the claim, not SQS, decides which one runs)
    assert len(receive_all(sqs, queue.urls.queue(Priority.NORMAL))) == 2


def test_tasks_of_one_priority_do_not_block_each_other(queue: SqsTaskQueue, sqs: Any) -> None:
    # Given several tasks on one queue, each in its own message group
    tasks = [queued() for _ in range(5)]
    for task in tasks:
        queue.send(task)
    # Then all are receivable at once: none waits behind another's in-flight message
    messages = receive_all(sqs, queue.urls.queue(Priority.NORMAL))
    assert sorted(m["Attributes"]["MessageGroupId"] for m in messages) == sorted(t.id for t in tasks)


def test_a_message_received_too_often_moves_to_the_dead_letter_queue(
    queue: SqsTaskQueue, sqs: Any, settings: CoreSettings
) -> None:
    # Given a message that every receiver gives back (visibility 0) max_receives times
    task = queued("high")
    queue.send(task)
    url = queue.urls.queue(Priority.HIGH)
    for _ in range(settings.max_receives):
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, VisibilityTimeout=0).get("Messages", [])
        assert len(got) == 1
    # When it is received once more, the RedrivePolicy moves it to the FIFO DLQ
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []) == []
    dead = receive_all(sqs, queue.urls.dlq(Priority.HIGH))
    assert [m["Attributes"]["MessageGroupId"] for m in dead] == [task.id]


def test_depths_count_waiting_in_flight_and_dead_lettered_messages_per_priority(
    queue: SqsTaskQueue, sqs: Any, settings: CoreSettings
) -> None:
    for priority in ("high", "high", "high", "low"):
        queue.send(queued(priority))
    queue.dead_letter(queued("low"))
    sqs.receive_message(QueueUrl=queue.urls.queue(Priority.HIGH), MaxNumberOfMessages=1, VisibilityTimeout=60)
    depths = queue.depths()
    assert [(d.name, d.priority) for d in depths] == [(settings.queue_name(p), p) for p in Priority]
    counts = {d.priority: (d.depth, d.in_flight, d.dlq_depth) for d in depths}
    assert counts == {Priority.HIGH: (2, 1, 0), Priority.NORMAL: (0, 0, 0), Priority.LOW: (1, 0, 1)}


def test_the_registry_remembers_each_group_once_and_apart_from_the_task_types(settings: CoreSettings) -> None:
    from tqcore.adapters.dynamodb.registry import DynamoRegistry

    registry = DynamoRegistry(aws.client(settings, "dynamodb"), settings)
    registry.register_types(["echo"], by="test")
    for group in ("team-b", "team-a", "team-b"):
        registry.add_group(group)
    assert registry.groups() == {"team-a", "team-b"}
    assert set(registry.task_types()) == {"echo"}


def test_an_instance_that_leaves_no_longer_counts_as_alive_and_its_peers_still_do(settings: CoreSettings) -> None:
    from tqcore.adapters.dynamodb.registry import DynamoRegistry

    registry = DynamoRegistry(aws.client(settings, "dynamodb"), settings)
    for instance in ("host-a:1", "host-b:2"):
        registry.heartbeat("executor", instance, ttl_s=30)
    registry.heartbeat("scheduler", "host-a:3", ttl_s=30)
    registry.leave("executor", "host-a:1")
    registry.leave("executor", "host-c:9")  # never there: nothing happens
    assert registry.alive() == {"executor": ["host-b:2"], "scheduler": ["host-a:3"]}
