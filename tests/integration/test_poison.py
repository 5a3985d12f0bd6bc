"""A message no executor can decode reaches the DLQ through the RedrivePolicy, and its task is failed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import start_stack
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import SystemClock, new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import EventType, Priority, Status
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings
from tqdev.stack import unique_prefix

pytestmark = pytest.mark.integration


def test_an_undecodable_message_is_dead_lettered_and_fails_its_task(emulator: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    # Re-sends are pushed far out so the only message for the task is the poison one.
    stack = start_stack(
        emulator, tmp_path, prefix=prefix, env={"TQ_RESEND_AFTER_S": "600", "TQ_REAPER_INTERVAL_S": "1"}
    )
    try:
        settings = CoreSettings(endpoint_url=emulator, prefix=prefix)
        store = DynamoTaskStore(aws.client(settings, "dynamodb"), settings)
        cmd = SubmitTask(type="echo", group="team-a")
        task = Task.submit(
            task_id=new_task_id(), owner="alice", now=SystemClock().now(), submitted={}, **cmd.task_fields()
        )
        store.create(task)
        # Given a message for the task that no executor can decode
        sqs = aws.client(settings, "sqs")
        url = sqs.get_queue_url(QueueName=settings.queue_name(Priority.NORMAL))["QueueUrl"]
        sqs.send_message(
            QueueUrl=url, MessageBody="{not json", MessageGroupId=task.id, MessageDeduplicationId="poison-1"
        )
        # Then after max_receives deliveries SQS moves it to the DLQ, and the reaper fails the task
        deadline = time.monotonic() + 60
        while store.get(task.id).status is not Status.FAILED:
            assert time.monotonic() < deadline, f"task still {store.get(task.id).status}"
            time.sleep(0.5)
        failed = store.get(task.id)
        assert failed.last_error is not None
        assert failed.last_error.type == "PoisonMessage"
        last = store.events(task.id)[-1]
        assert (last.type, last.actor) == (EventType.DEAD_LETTERED, "reaper")
        assert last.data["receives"] >= settings.max_receives
        # and the executors are still healthy: a normal task still runs
        ok = Task.submit(
            task_id=new_task_id(), owner="alice", now=SystemClock().now(), submitted={}, **cmd.task_fields()
        )
        store.create(ok)
        SqsTaskQueue(sqs, settings).send(ok.committed())
        deadline = time.monotonic() + 20
        while store.get(ok.id).status is not Status.SUCCEEDED:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        stack.stop()
