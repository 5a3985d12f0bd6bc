"""``GET /v1/overview`` over in-memory fakes: its shape (checked against the OpenAPI schema), what each caller sees."""

from __future__ import annotations

import jsonschema_rs
import pytest

from tq_gateway.openapi import build_spec
from tq_gateway.testing import client_over_fakes
from tqcore.activity import Activity
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo
from tqcore.domain.task import Task
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
BOB = {"Authorization": "Bearer dev-bob"}
ADMIN = {"Authorization": "Bearer dev-admin"}
SPEC = build_spec()


def _failed(store: InMemoryTaskStore, clock: FixedClock, task_id: str, group: str) -> None:
    cmd = SubmitTask.model_validate({"type": "echo", "group": group, "retry": {"max_retries": 0}})
    task = Task.submit(task_id=task_id, owner="u", now=clock.now(), submitted={}, **cmd.task_fields())
    store.create(task)
    task = mutate(store, task.committed(), lambda t: t.claim(1, "h:1", clock.now(), 30))
    mutate(store, task, lambda t: t.fail(1, "h:1", ErrorInfo("E", "boom"), clock.now(), jitter=0.0))


def test_the_overview_answers_pools_replicas_throughput_lag_and_the_callers_dead_letters() -> None:
    # Given an executor and a scheduler that reported activity, a queued task, and dead letters in two groups
    store, queue, clock = InMemoryTaskStore(), RecordingQueue(), FixedClock()
    registry = InMemoryRegistry(["echo"])
    for group in ("team-a", "team-b"):
        registry.add_group(group)
    minute = int(clock.now().timestamp() // 60)
    registry.heartbeat("executor", "h:1", 30, Activity(minute, succeeded=(3, 4), failed=(0, 1), pool="default"))
    registry.heartbeat(
        "scheduler", "h:2", 30, Activity(minute, fired=(2,), lag_s=(0.75,), pass_at=clock.now().timestamp() - 2)
    )
    _failed(store, clock, "t-a", "team-a")
    _failed(store, clock, "t-b", "team-b")
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a"})
    waiting = Task.submit(task_id="t-q", owner="u", now=clock.now(), submitted={}, **cmd.task_fields())
    store.create(waiting)
    queue.send(waiting)
    clock.advance(12)
    http = client_over_fakes(store=store, queue=queue, registry=registry, clock=clock)
    # When alice reads the overview
    response = http.simulate_get("/v1/overview", headers=ALICE)
    # Then it matches its schema and shows the system's totals, and dead letters of her group only
    assert response.status_code == 200, response.text
    body = response.json
    jsonschema_rs.validator_for({"$ref": "#/components/schemas/Overview", "components": SPEC["components"]}).validate(
        body
    )
    assert body["at"] == "2026-01-05T08:00:12.000Z"
    [default] = body["pools"]
    normal = next(q for q in default["queues"] if q["priority"] == "normal")
    assert (default["name"], default["executors"], normal["depth"], normal["oldest_age_s"]) == ("default", 1, 1, 12.0)
    assert body["replicas"] == {"gateway": 0, "executor": 1, "scheduler": 1, "reaper": 0}
    assert [(m["succeeded"], m["failed"]) for m in body["throughput"][-2:]] == [(3, 0), (4, 1)]
    assert body["throughput"][-1]["minute"] == "2026-01-05T08:00:00.000Z"
    assert body["scheduler"] == {"lag_s": 0.75, "last_pass_age_s": 14.0}
    assert body["dead_letters"] == {"team-a": 1}
    # bob sees his group's dead letters, an admin every group's; without a token: 401
    assert http.simulate_get("/v1/overview", headers=BOB).json["dead_letters"] == {"team-b": 1}
    assert http.simulate_get("/v1/overview", headers=ADMIN).json["dead_letters"] == {"team-a": 1, "team-b": 1}
    assert http.simulate_get("/v1/overview").status_code == 401


def test_an_unreachable_sqs_makes_the_overview_a_503_problem() -> None:
    from tqcore.errors import QueueUnavailable

    queue = RecordingQueue()

    def down(pools: object = ()) -> list[object]:
        raise QueueUnavailable("sqs down (fake)")

    queue.depths = down  # type: ignore[method-assign]
    response = client_over_fakes(queue=queue).simulate_get("/v1/overview", headers=ALICE)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert "Traceback" not in response.text
