"""``POST /v1/tasks:batch`` over the in-memory fakes: routing, per-item answers equal to single submits', limits."""

from __future__ import annotations

import json
from typing import Any

import falcon.testing
import pytest

from tq_gateway.settings import GatewaySettings
from tq_gateway.testing import client_over_fakes
from tqcore.errors import StoreUnavailable
from tqcore.testing import InMemoryTaskStore, RecordingQueue

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
ECHO = {"type": "echo", "group": "team-a", "payload": {"x": 1}}
BATCH = "/v1/tasks:batch"


class UnavailableStore(InMemoryTaskStore):
    """A store whose every write is throttled."""

    def create(self, *args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("throttled (fake)")


def client(store: InMemoryTaskStore | None = None, **settings: Any) -> falcon.testing.TestClient:
    return client_over_fakes(GatewaySettings(**settings), store=store)


def test_items_are_answered_in_order_each_as_a_single_submit_would_be() -> None:
    # Given bodies that a single submit answers 201, 403, 422 (unknown type), 422 (validation) and 409
    bodies: list[Any] = [
        {**ECHO, "idempotency_key": "k"},
        {**ECHO, "group": "team-b"},
        {**ECHO, "type": "nope"},
        {**ECHO, "priority": "urgent"},
        {**ECHO, "idempotency_key": "k", "payload": {"x": 2}},
    ]
    singles = client()
    expected = [singles.simulate_post("/v1/tasks", json=body, headers=ALICE) for body in bodies]
    # When they are submitted as one batch (on a fresh app: the same task ids)
    response = client().simulate_post(BATCH, json={"tasks": bodies}, headers=ALICE)
    # Then each item carries the single submit's status and its task or its problem document, exactly
    assert response.status_code == 200
    items = response.json["items"]
    assert [item["status"] for item in items] == [201, 403, 422, 422, 409]
    assert [single.status_code for single in expected] == [item["status"] for item in items]
    assert items[0]["task"] == expected[0].json
    for item, single in zip(items[1:], expected[1:], strict=True):
        assert item["error"] == single.json
    assert items[3]["error"]["errors"][0]["loc"] == ["priority"]


def test_an_item_that_is_not_an_object_is_that_items_422() -> None:
    response = client().simulate_post(BATCH, json={"tasks": [ECHO, "echo"]}, headers=ALICE)
    assert [item["status"] for item in response.json["items"]] == [201, 422]
    assert response.json["items"][1]["error"]["type"] == "urn:tq:problem:validation"


def test_a_key_repeated_in_one_batch_replays_the_first_item() -> None:
    queue = RecordingQueue()
    body = {**ECHO, "idempotency_key": "dup"}
    response = client_over_fakes(queue=queue).simulate_post(BATCH, json={"tasks": [body, body]}, headers=ALICE)
    first, second = response.json["items"]
    assert (first["status"], second["status"]) == (201, 200)
    assert first["task"]["id"] == second["task"]["id"]
    assert len(queue.sent) == 1


@pytest.mark.parametrize("tasks", [[], [ECHO] * 501, {"type": "echo"}, None])
def test_a_batch_of_no_or_too_many_tasks_is_a_422(tasks: Any) -> None:
    response = client().simulate_post(BATCH, json={"tasks": tasks}, headers=ALICE)
    assert response.status_code == 422
    assert response.json["errors"][0]["loc"][0] == "tasks"


def test_a_batch_needs_authentication() -> None:
    assert client().simulate_post(BATCH, json={"tasks": [ECHO]}).status_code == 401


def test_a_get_of_the_batch_path_is_a_405_not_a_task_lookup() -> None:
    response = client().simulate_get(BATCH, headers=ALICE)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"


def test_a_full_batch_of_small_tasks_fits_the_default_batch_body_limit() -> None:
    tasks = [{**ECHO, "idempotency_key": f"key-{n:04}", "payload": {"text": "x" * 600}} for n in range(500)]
    body = json.dumps({"tasks": tasks})
    assert len(body) > GatewaySettings().max_body_bytes  # over a single submit's limit
    response = client().simulate_post(BATCH, body=body, headers={**ALICE, "content-type": "application/json"})
    assert response.status_code == 200
    assert {item["status"] for item in response.json["items"]} == {201}


def test_a_batch_over_its_body_limit_is_a_413() -> None:
    body = json.dumps({"tasks": [{**ECHO, "payload": {"text": "x" * 1000}}] * 80})
    response = client(max_batch_body_bytes=64 * 1024).simulate_post(
        BATCH, body=body, headers={**ALICE, "content-type": "application/json"}
    )
    assert response.status_code == 413


def test_a_store_that_wrote_nothing_is_a_503_for_the_whole_batch() -> None:
    response = client(UnavailableStore()).simulate_post(BATCH, json={"tasks": [ECHO, ECHO]}, headers=ALICE)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
