"""An enqueue that fails after the submit committed: the task is still run, once (re-send by the reaper)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import executions, start_stack
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import SystemClock, new_task_id
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import EventType, Status
from tqcore.settings import CoreSettings
from tqcore.usecases.service import Catalog, Tasks
from tqdev.procs import free_port
from tqdev.stack import unique_prefix

pytestmark = pytest.mark.integration


def test_a_task_whose_enqueue_failed_is_resent_by_the_reaper_and_runs_once(emulator: str, tmp_path: Path) -> None:
    prefix = unique_prefix()
    stack = start_stack(
        emulator, tmp_path, prefix=prefix, env={"TQ_RESEND_AFTER_S": "2", "TQ_REAPER_INTERVAL_S": "0.5"}
    )
    try:
        settings = CoreSettings(endpoint_url=emulator, prefix=prefix, resend_after_s=2)
        ddb = aws.client(settings, "dynamodb")
        store = DynamoTaskStore(ddb, settings)
        # Given a gateway whose SQS endpoint is down (a real connection refused, nothing listens there)
        dead_sqs = aws.client(CoreSettings(endpoint_url=f"http://127.0.0.1:{free_port()}", prefix=prefix), "sqs")
        tasks = Tasks(
            store,
            SqsTaskQueue(dead_sqs, settings),
            Catalog(DynamoRegistry(ddb, settings)),
            SystemClock(),
            new_task_id,
        )
        # When a task is submitted
        submitted = tasks.submit(
            SubmitTask(type="echo", group="team-a", payload={"lost": True}), Principal("alice", frozenset({"team-a"}))
        ).task
        # Then the submit still succeeds: the task is durable and queued
        assert store.get(submitted.id).status is Status.QUEUED
        # and the reaper re-sends it, so it runs and succeeds
        deadline = time.monotonic() + 30
        while store.get(submitted.id).status is not Status.SUCCEEDED:
            assert time.monotonic() < deadline, f"task still {store.get(submitted.id).status}"
            time.sleep(0.2)
        time.sleep(1)
        assert [e for e in executions(stack) if e[0] == submitted.id] == [(submitted.id, 1)]
        history = store.events(submitted.id)
        resends = [e for e in history if e.type is EventType.QUEUED and e.actor == "reaper"]
        assert len(resends) >= 1
        assert history[-1].type is EventType.SUCCEEDED
    finally:
        stack.stop()
