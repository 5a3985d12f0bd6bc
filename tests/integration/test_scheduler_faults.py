"""A due task whose commits fail at the store (injected by the fault proxy) still runs; the others run on time."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import executions
from tq_scheduler.scheduler import Scheduler
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import new_task_id
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Status
from tqcore.settings import CoreSettings
from tqcore.testing import FixedClock
from tqcore.usecases.service import Catalog, Tasks
from tqdev.faults import Fault, FaultProxy
from tqdev.stack import Stack, StackConfig, unique_prefix

pytestmark = pytest.mark.integration

ALICE = Principal("alice", frozenset({"team-a"}))


def test_a_task_whose_commits_fail_for_twenty_minutes_still_runs_and_the_others_on_time(
    emulator: str, tmp_path: Path
) -> None:
    # Given a stack with an executor and no scheduler process: the scheduler runs here, on a clock the test moves
    prefix = unique_prefix()
    stack = Stack(
        StackConfig(
            endpoint_url=emulator,
            prefix=prefix,
            run_dir=tmp_path,
            executors=1,
            reapers=0,
            schedulers=0,
            env={"TQ_READY_REQUIRES": "executor", "TQ_DEMO_EXECUTION_LOG": str(tmp_path / "executions.log")},
        )
    )
    try:
        stack.start()
        with FaultProxy(upstream=emulator) as proxy:
            # and the scheduler's store and queue reached through the fault proxy
            # (each commit its own call — as many in flight as there are commits, none lingering for company — so
            # that the fault below refuses the stuck task's commits and no other's)
            via = CoreSettings(endpoint_url=proxy.url, prefix=prefix, write_max_inflight=64, write_linger_ms=0)
            ddb = aws.client(via, "dynamodb")
            store = DynamoTaskStore(ddb, via)
            registry = DynamoRegistry(ddb, via)
            queue = SqsTaskQueue(aws.client(via, "sqs"), via)
            clock = FixedClock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=40))
            tasks = Tasks(store, queue, Catalog(registry), clock, new_task_id)
            due_at = clock.now() + timedelta(seconds=30)
            submit = SubmitTask.model_validate(
                {"type": "echo", "group": "team-a", "schedule": {"at": due_at.isoformat()}}
            )
            stuck, *others = [tasks.submit(submit, ALICE).task.id for _ in range(4)]
            # and every commit of one task refused at the store. InternalServerError is what the adapter sees once
            # botocore's own retries ran out; answered with 400 so botocore does not retry it itself (seconds, not
            # minutes, per commit)
            rule = proxy.inject(
                Fault.error("InternalServerError", status=400),
                service="dynamodb",
                operation="UpdateItem",  # a commit of one task item
                match=stuck,
            )
            sched = Scheduler(store, queue, registry, clock, parts=via.due_shards, catchup_s=3600)
            try:
                # When the scheduler runs at the tasks' time, and ten and twenty minutes later
                clock.advance(31)
                first_pass = clock.now()
                sched.run_once()
                # Then the others are queued by the pass at their time, not held up by the failing one
                for task_id in others:
                    assert store.get(task_id).queued_at == first_pass
                for _ in range(2):
                    clock.advance(600)
                    sched.run_once()
                assert store.get(stuck).status is Status.SCHEDULED
                # When the store takes the task's commits again, twenty minutes on (far behind the 15 minutes
                # the bucket walk covers)
                proxy.remove(rule)
                clock.advance(600)
                sched.run_once()
            finally:
                sched.close()
            # Then the task runs, once, as the others did
            deadline = time.monotonic() + 30
            while any(store.get(i).status is not Status.SUCCEEDED for i in [stuck, *others]):
                assert time.monotonic() < deadline, {i: store.get(i).status.value for i in [stuck, *others]}
                time.sleep(0.2)
            assert sorted(executions(stack)) == sorted((i, 1) for i in [stuck, *others])
            # and each failing pass tried its commit three times (two retries after a pause)
            assert rule.hits == 3 * 3
    finally:
        stack.stop()
