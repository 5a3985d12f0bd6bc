"""Leases never lapse for a healthy attempt (issue 14, point 5).

One attempt's slow lease extension delays no other attempt's beat, and that attempt is stopped before its lease
lapses, so its re-run never overlaps it. Messages buffered unstarted behind long tasks are given back once, so
none bounces into the dead-letter queue.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import executions, running_stack, wait_for_status
from tqcore.adapters import aws
from tqcore.domain.model import Priority
from tqcore.settings import CoreSettings
from tqdev.faults import Fault, FaultProxy
from tqdev.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LEASE_S = 6


def at(value: str) -> float:
    """An API or log timestamp as seconds since the epoch."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def submit_sleep(api: httpx.Client, seconds: float) -> str:
    body = {"type": "sleep", "group": "team-a", "payload": {"seconds": seconds}, "retry": {"backoff_base_s": 0.5}}
    response = api.post("/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def executor_log(stack: Stack, task_id: str, message: str) -> list[dict[str, Any]]:
    """Lines of executor-1's log about ``task_id`` that start with ``message``."""
    lines = (stack.config.run_dir / "executor-1.log").read_text().splitlines()
    parsed = [json.loads(line) for line in lines if line.startswith("{")]
    return [p for p in parsed if p.get("task_id") == task_id and p["message"].startswith(message)]


def test_a_slow_lease_extension_delays_no_other_attempt_and_its_own_attempt_stops_before_the_lease_lapses(
    emulator: str, tmp_path: Path
) -> None:
    env = {
        "TQ_LEASE_S": str(LEASE_S),
        "TQ_HEARTBEAT_S": "2",
        "TQ_REAPER_INTERVAL_S": "0.5",
        "TQ_THREADS": "8",
        "TQ_RESEND_AFTER_S": "600",
    }
    with (
        FaultProxy(upstream=emulator) as proxy,
        running_stack(proxy.url, tmp_path, executors=1, env=env) as stack,
        httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=10) as api,
    ):
        # Given one executor running four attempts, one of whose lease extensions each take 10 s (longer than
        # the lease)
        slow = submit_sleep(api, 8)
        # (its heartbeats only: since the lease moved into the task item, its commits are UpdateItems of it too)
        beat = (slow, "SET lease_until = :until")
        rule = proxy.inject(Fault.latency(10), service="dynamodb", operation="UpdateItem", match=beat)
        healthy = [submit_sleep(api, 10) for _ in range(3)]
        for task_id in (slow, *healthy):
            wait_for_status(api, task_id, {"running"}, timeout_s=15)
        # When the slow attempt's lease has been reclaimed and its next attempt claimed
        deadline = time.monotonic() + 20
        while (task := api.get(f"/v1/tasks/{slow}").json())["attempts"] < 2:
            assert time.monotonic() < deadline, task
            time.sleep(0.1)
        proxy.remove(rule)  # the next attempt extends its lease normally
        # Then the other attempts kept their leases: each ran once, and succeeded
        for task_id in healthy:
            done = wait_for_status(api, task_id, {"succeeded", "failed"}, timeout_s=30)
            assert (done["status"], done["attempts"]) == ("succeeded", 1), done
        done = wait_for_status(api, slow, {"succeeded", "failed"}, timeout_s=30)
        assert done["status"] == "succeeded", done
        ran = Counter(task_id for task_id, _ in executions(stack))
        assert [ran[task_id] for task_id in healthy] == [1, 1, 1]
        assert rule.hits >= 1
        # and the slow attempt's handler was gone before its lease (never extended) lapsed, before the re-run
        events = api.get(f"/v1/tasks/{slow}/events").json()["items"]
        claimed = [at(e["at"]) for e in events if e["type"] == "claimed"]
        stopped = executor_log(stack, slow, "attempt stopped")
        started = executor_log(stack, slow, "attempt started")
        assert len(claimed) == 2, events
        assert len(stopped) == 1, stopped
        assert [s["attempt"] for s in started] == [1, 2]
        assert at(stopped[0]["time"]) < claimed[0] + LEASE_S
        assert at(stopped[0]["time"]) < at(started[1]["time"])
        runs = api.get(f"/v1/tasks/{slow}/runs").json()["items"]
        assert [r["status"] for r in runs] == ["succeeded", "lost"]  # newest first


def test_a_backlog_of_long_tasks_buffered_beyond_their_visibility_reaches_no_dead_letter_queue(
    emulator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an executor that buffers more messages (8) than it has threads (2), a 6 s visibility timeout, and
    # queues that dead-letter a message on its third receive; no reaper, so the dead-letter queue keeps what
    # SQS moves there
    monkeypatch.setenv("TQ_MAX_RECEIVES", "2")  # read by the stack's bootstrap
    env = {
        "TQ_LEASE_S": str(LEASE_S),
        "TQ_HEARTBEAT_S": "2",
        "TQ_THREADS": "2",
        "TQ_PREFETCH": "8",
        "TQ_RESEND_AFTER_S": "600",
        "TQ_READY_REQUIRES": "scheduler,executor",
    }
    with (
        running_stack(emulator, tmp_path, executors=1, reapers=0, env=env) as stack,
        httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=10) as api,
    ):
        # When ten 4 s tasks arrive at once (most wait buffered far longer than their visibility: each is given
        # back after about a lease, and kept once this executor receives it again)
        tasks = [submit_sleep(api, 4) for _ in range(10)]
        # Then each runs once and succeeds
        for task_id in tasks:
            done = wait_for_status(api, task_id, {"succeeded", "failed"}, timeout_s=60)
            assert (done["status"], done["attempts"]) == ("succeeded", 1), done
        ran = Counter(task_id for task_id, _ in executions(stack))
        assert [ran[task_id] for task_id in tasks] == [1] * 10
        # and no message went to the dead-letter queue
        settings = CoreSettings(endpoint_url=emulator, prefix=stack.config.prefix)
        sqs = aws.client(settings, "sqs")
        dlq = sqs.get_queue_url(QueueName=settings.dlq_name(Priority.NORMAL))["QueueUrl"]
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        counts = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=names)["Attributes"]
        assert {name: int(counts[name]) for name in names} == dict.fromkeys(names, 0)
