"""Traces end to end: every service exports OTLP to a receiver in the test, and a run is one trace."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import running_stack, wait_for_status
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.settings import CoreSettings
from tqdev.otlp import OtlpReceiver, Span
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

ECHO = {"type": "echo", "group": "team-a", "payload": {"x": 1}}


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as started:
        yield started


@pytest.fixture(scope="module")
def stack(emulator: str, receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack exporting every span to ``receiver`` within 0.2 s of its end."""
    env = {"TQ_TRACES_EXPORTER": "otlp", "TQ_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
    with running_stack(emulator, tmp_path_factory.mktemp("traces") / "run", env=env) as started:
        yield started


def attempt_trace(receiver: OtlpReceiver, task_id: str, needs: Callable[[list[Span]], bool]) -> list[Span]:
    """The spans of the trace holding the attempt of ``task_id``, once ``needs`` holds for them (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        spans = receiver.spans()
        attempts = [s for s in spans if s.name == "tq.attempt" and s.attributes.get("tq.task_id") == task_id]
        if attempts:
            trace = [s for s in spans if s.trace_id == attempts[0].trace_id]
            if needs(trace):
                return trace
        if time.monotonic() > deadline:
            names = sorted((s.service, s.name) for s in spans if not attempts or s.trace_id == attempts[0].trace_id)
            raise AssertionError(f"no complete trace for {task_id} after 10 s; spans seen: {names}")
        time.sleep(0.1)


def one(spans: list[Span], name: str, **attributes: object) -> Span:
    found = [s for s in spans if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, (name, [(s.service, s.name) for s in spans])
    return found[0]


def children(spans: list[Span], parent: Span, prefix: str) -> list[Span]:
    return [s for s in spans if s.parent_span_id == parent.span_id and s.name.startswith(prefix)]


def submitted_trace(receiver: OtlpReceiver, task_id: str, *, scheduled: bool) -> list[Span]:
    """The task's trace once it holds the request, (the promotion,) the enqueue, the attempt and its AWS calls."""

    def complete(spans: list[Span]) -> bool:
        names = {s.name for s in spans}
        attempt_calls = [s for s in spans if s.service == "tq-executor" and s.kind == "CLIENT"]
        wanted = {"POST /v1/tasks", "tq.enqueue", "tq.attempt"} | ({"tq.promote"} if scheduled else set())
        return wanted <= names and len(attempt_calls) >= 2  # the claim and the outcome

    return attempt_trace(receiver, task_id, complete)


def test_a_task_is_one_trace_from_the_request_to_its_attempt(
    client: Callable[[str], httpx.Client], receiver: OtlpReceiver, stack: Stack
) -> None:
    alice = client("alice")
    # When alice submits a task and it succeeds
    created = alice.post("/v1/tasks", json=ECHO)
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    wait_for_status(alice, task_id, {"succeeded"}, timeout_s=10)
    # Then one trace holds the request, its DynamoDB write, the enqueue and the attempt, each the parent of the next
    spans = submitted_trace(receiver, task_id, scheduled=False)
    request = one(spans, "POST /v1/tasks")
    assert (request.kind, request.service, request.parent_span_id) == ("SERVER", "tq-gateway", None)
    # (a worker's first submit also reads the type catalog and records the group)
    assert "DynamoDB.PutItem" in [s.name for s in children(spans, request, "DynamoDB.")]  # the task item
    enqueue = one(spans, "tq.enqueue", **{"tq.task_id": task_id})
    assert (enqueue.kind, enqueue.service, enqueue.parent_span_id) == ("PRODUCER", "tq-gateway", request.span_id)
    assert "SQS.SendMessage" in [s.name for s in children(spans, enqueue, "SQS.")]  # (after GetQueueUrl, once)
    attempt = one(spans, "tq.attempt", **{"tq.task_id": task_id})
    assert (attempt.kind, attempt.service, attempt.parent_span_id) == ("CONSUMER", "tq-executor", enqueue.span_id)
    assert (attempt.attributes["tq.attempt"], attempt.attributes["tq.run"], attempt.attributes["tq.type"]) == (
        1,
        1,
        "echo",
    )
    assert attempt.attributes["tq.outcome"] == "succeeded"
    # and the claim and the outcome are DynamoDB calls within the attempt
    assert [s.name for s in children(spans, attempt, "DynamoDB.")] == ["DynamoDB.UpdateItem"] * 2
    # and the task keeps the context its runs are traced under (stored, not shown by the API)
    settings = CoreSettings(endpoint_url=stack.config.endpoint_url, prefix=stack.config.prefix)
    stored = DynamoTaskStore(aws.client(settings, "dynamodb"), settings).get(task_id)
    assert stored.trace_context is not None
    assert stored.trace_context["traceparent"].split("-")[1:3] == [request.trace_id, request.span_id]
    assert "trace_context" not in created.json()


def test_a_scheduled_task_runs_in_its_submits_trace_through_the_promotion(
    client: Callable[[str], httpx.Client], receiver: OtlpReceiver
) -> None:
    alice = client("alice")
    # When alice submits a task due in 2 s
    at = datetime.now(UTC) + timedelta(seconds=2)
    created = alice.post("/v1/tasks", json={**ECHO, "schedule": {"at": at.isoformat()}})
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    wait_for_status(alice, task_id, {"succeeded"}, timeout_s=15)
    # Then the scheduler's promotion continues the request's trace, and the enqueue and the attempt follow it
    spans = submitted_trace(receiver, task_id, scheduled=True)
    request = one(spans, "POST /v1/tasks")
    promote = one(spans, "tq.promote", **{"tq.task_id": task_id})
    assert (promote.service, promote.parent_span_id) == ("tq-scheduler", request.span_id)
    assert (promote.attributes["tq.attempt"], promote.attributes["tq.events"]) == (1, ["queued"])
    assert [s.name for s in children(spans, promote, "DynamoDB.")] == ["DynamoDB.UpdateItem"]
    enqueue = one(spans, "tq.enqueue", **{"tq.task_id": task_id})
    assert (enqueue.service, enqueue.parent_span_id) == ("tq-scheduler", promote.span_id)
    attempt = one(spans, "tq.attempt", **{"tq.task_id": task_id})
    assert (attempt.parent_span_id, attempt.attributes["tq.attempt"]) == (enqueue.span_id, 1)
