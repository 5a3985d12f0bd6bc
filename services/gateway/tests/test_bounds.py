"""Bounded memory per request over in-memory fakes: payloads bounded in nodes (413), listing pages bounded in
bytes and served as the stored documents."""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from tq_gateway.settings import GatewaySettings
from tq_gateway.testing import client_over_fakes
from tqcore.testing import InMemoryTaskStore

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}


def client(store: InMemoryTaskStore | None = None, **settings: Any) -> falcon.testing.TestClient:
    return client_over_fakes(GatewaySettings(**settings), store=store)


def submit(api: falcon.testing.TestClient, payload: object) -> falcon.testing.Result:
    return api.simulate_post("/v1/tasks", json={"type": "echo", "group": "team-a", "payload": payload}, headers=ALICE)


def test_a_payload_of_too_many_nodes_is_a_413_problem_and_stores_nothing() -> None:
    # Given the default bound, and 256 KiB of [{},{},...] (87,000 nodes, within the byte limit)
    store = InMemoryTaskStore()
    api = client(store)
    body = b'{"type":"echo","group":"team-a","payload":[' + b",".join([b"{}"] * 87_000) + b"]}"
    assert len(body) < 256 * 1024
    # When it is submitted
    response = api.simulate_post("/v1/tasks", body=body, headers={**ALICE, "content-type": "application/json"})
    # Then it is refused as too large, saying why, and nothing was stored
    assert response.status_code == 413, response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json["type"].endswith("too-large")
    assert "more than 10000 JSON nodes" in response.json["detail"]
    assert api.simulate_get("/v1/tasks", headers=ALICE).json["items"] == []


def test_the_node_bound_is_a_setting_and_applies_to_patch() -> None:
    api = client(max_json_nodes=100)
    assert submit(api, list(range(99))).status_code == 201
    assert submit(api, list(range(100))).status_code == 413
    task = submit(api, {"x": 1}).json
    response = api.simulate_patch(f"/v1/tasks/{task['id']}", json={"payload": [[]] * 100}, headers=ALICE)
    assert response.status_code == 413, response.text[:300]
    assert api.simulate_get(f"/v1/tasks/{task['id']}", headers=ALICE).json["payload"] == {"x": 1}


def test_listing_pages_end_at_the_byte_budget_and_serve_the_task_resources() -> None:
    # Given eight tasks of about 3 KiB each and pages of at most 8 KiB
    api = client(list_page_bytes=8 * 1024)
    made = [submit(api, {"blob": "é" * 1500, "n": n}).json["id"] for n in range(8)]
    # When alice pages through them 50 at a time
    items: list[dict[str, Any]] = []
    sizes: list[int] = []
    cursor = None
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        response = api.simulate_get("/v1/tasks", params=params, headers=ALICE)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        items += response.json["items"]
        sizes.append(len(response.json["items"]))
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    # Then the pages were short (the budget, not the limit, ended them) and held every task once, as GET shows it
    assert max(sizes) < 8
    assert len(sizes) > 1
    assert [item["id"] for item in items] == made[::-1]
    assert items == [api.simulate_get(f"/v1/tasks/{i}", headers=ALICE).json for i in made[::-1]]
