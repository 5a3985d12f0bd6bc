"""Task metrics counted from committed events: each outcome lands in the right counter, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo
from tqcore.domain.task import Task
from tqcore.metrics import observe_commit

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
WORKER = "host-a:101"
BOOM = ErrorInfo("ValueError", "boom")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def committed(task: Task, change: Any) -> None:
    """Apply ``change`` and count its events as a commit would."""
    change(task)
    observe_commit(task, task.pending_events)
    task.pending_events.clear()


def submit(type_: str, **body: Any) -> Task:
    cmd = SubmitTask.model_validate({"type": type_, "group": "team-a", **body})
    task = Task.submit(task_id="t-1", owner="alice", now=T0, submitted=cmd.model_dump(mode="json"), **cmd.task_fields())
    observe_commit(task, task.pending_events)
    task.pending_events.clear()
    return task


def test_a_run_that_fails_once_then_succeeds() -> None:
    task = submit("m-retry", priority="high", retry={"max_retries": 3})
    assert sample("tq_tasks_submitted_total", type="m-retry", priority="high") == 1
    wait_count = sample("tq_queue_wait_seconds_count", priority="high")
    wait_sum = sample("tq_queue_wait_seconds_sum", priority="high")
    committed(task, lambda t: t.claim(1, WORKER, T0 + timedelta(seconds=3), 30))
    assert sample("tq_queue_wait_seconds_count", priority="high") == wait_count + 1
    assert sample("tq_queue_wait_seconds_sum", priority="high") == pytest.approx(wait_sum + 3)
    committed(task, lambda t: t.fail(1, WORKER, BOOM, T0 + timedelta(seconds=5), jitter=0.0))
    assert sample("tq_tasks_failed_total", type="m-retry", priority="high") == 1
    assert sample("tq_tasks_retried_total", type="m-retry", priority="high") == 1
    assert sample("tq_run_duration_seconds_sum", type="m-retry", outcome="failed") == pytest.approx(2)
    # the scheduler promotes the retry 1.5 s after it fell due
    lag_count = sample("tq_scheduler_lag_seconds_count")
    lag_sum = sample("tq_scheduler_lag_seconds_sum")
    due = task.next_run_at
    assert due is not None
    committed(task, lambda t: t.promote(due + timedelta(seconds=1.5)))
    assert sample("tq_scheduler_lag_seconds_count") == lag_count + 1
    assert sample("tq_scheduler_lag_seconds_sum") == pytest.approx(lag_sum + 1.5)
    committed(task, lambda t: t.claim(2, WORKER, due + timedelta(seconds=2), 30))
    committed(task, lambda t: t.succeed(2, WORKER, {}, due + timedelta(seconds=3)))
    assert sample("tq_tasks_succeeded_total", type="m-retry", priority="high") == 1
    assert sample("tq_tasks_dead_lettered_total", type="m-retry", priority="high") == 0
    assert sample("tq_run_duration_seconds_count", type="m-retry", outcome="succeeded") == 1


def test_the_last_failure_dead_letters_without_a_retry() -> None:
    task = submit("m-dead", retry={"max_retries": 0})
    committed(task, lambda t: t.claim(1, WORKER, T0, 30))
    committed(task, lambda t: t.fail(1, WORKER, BOOM, T0 + timedelta(seconds=1), jitter=0.0))
    assert sample("tq_tasks_failed_total", type="m-dead", priority="normal") == 1
    assert sample("tq_tasks_retried_total", type="m-dead", priority="normal") == 0
    assert sample("tq_tasks_dead_lettered_total", type="m-dead", priority="normal") == 1


def test_a_reclaimed_lease_counts_a_reclaim_and_a_failed_attempt_that_retries() -> None:
    reclaims = sample("tq_lease_reclaims_total")
    task = submit("m-lost", retry={"max_retries": 1})
    committed(task, lambda t: t.claim(1, WORKER, T0, 30))
    committed(task, lambda t: t.expire_lease(T0 + timedelta(seconds=31), jitter=0.0))
    assert sample("tq_lease_reclaims_total") == reclaims + 1
    assert sample("tq_tasks_failed_total", type="m-lost", priority="normal") == 1
    assert sample("tq_tasks_retried_total", type="m-lost", priority="normal") == 1


def test_a_resend_and_a_cancel() -> None:
    resends = sample("tq_resends_total")
    task = submit("m-cancel")
    committed(task, lambda t: t.resend(T0 + timedelta(seconds=30)))
    assert sample("tq_resends_total") == resends + 1
    committed(task, lambda t: t.request_cancel("alice", T0 + timedelta(seconds=31)))
    assert sample("tq_tasks_cancelled_total", type="m-cancel", priority="normal") == 1
