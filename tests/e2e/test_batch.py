"""``POST /v1/tasks:batch`` against the composed stack: 500 submits in one request, each answered and run once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import executions
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

BATCH = "/v1/tasks:batch"


def echo(n: int, **fields: Any) -> dict[str, Any]:
    # ~600 bytes each: 500 of them are over a single submit's body limit (256 KiB), under the batch's (1 MiB)
    return {"type": "echo", "group": "team-a", "payload": {"n": n, "pad": "x" * 560}, **fields}


def succeeded_ids(api: httpx.Client, wanted: set[str], timeout_s: float) -> set[str]:
    """Poll the group's succeeded tasks (listing pages) until every id of ``wanted`` is among them."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen: set[str] = set()
        cursor = None
        while True:
            params = {"group": "team-a", "status": "succeeded", "limit": 200, **({"cursor": cursor} if cursor else {})}
            page = api.get("/v1/tasks", params=params).json()
            seen |= {task["id"] for task in page["items"]}
            cursor = page["next_cursor"]
            if cursor is None:
                break
        if wanted <= seen or time.monotonic() > deadline:
            return seen & wanted
        time.sleep(0.5)


def test_a_batch_of_500_answers_each_item_and_runs_every_valid_one_once(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    alice = client("alice")
    # Given a key a single submit used earlier
    earlier = alice.post("/v1/tasks", json=echo(-1, idempotency_key="used-before"))
    assert earlier.status_code == 201, earlier.text
    # and a batch of 500: three invalid items, one another group's, the earlier key replayed, a key twice (the
    # second time with the same body) and the rest plain or with keys of their own
    tasks = [echo(n, **({"idempotency_key": f"own-{n}"} if n % 2 else {})) for n in range(500)]
    tasks[10] = {"type": "echo"}  # no group
    tasks[11] = echo(11, priority="urgent")
    tasks[12] = echo(12, type="no-such-type")
    tasks[13] = echo(13, group="team-b")
    tasks[14] = echo(-1, idempotency_key="used-before")
    tasks[20] = echo(20, idempotency_key="twice")
    tasks[21] = echo(20, idempotency_key="twice")
    # When it is submitted in one request (through the real gunicorn worker: over 256 KiB of body)
    started = time.monotonic()
    response = alice.post(BATCH, json={"tasks": tasks}, timeout=60)
    took = time.monotonic() - started
    # Then every item is answered in order
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    statuses = [item["status"] for item in items]
    assert statuses[10:15] == [422, 422, 422, 403, 200]
    assert items[14]["task"]["id"] == earlier.json()["id"]
    assert (statuses[20], statuses[21]) == (201, 200)
    assert items[21]["task"]["id"] == items[20]["task"]["id"]
    assert items[10]["error"]["errors"][0]["loc"] == ["group"]
    assert items[12]["error"]["type"] == "urn:tq:problem:unknown-task-type"
    assert Counter(statuses) == Counter({201: 494, 422: 3, 403: 1, 200: 2})
    created = {item["task"]["id"]: item["task"]["payload"]["n"] for item in items if item["status"] == 201}
    print(f"\n500 submits in one batch: {took:.2f} s")
    # and every created task runs once, with its own payload as its result
    done = succeeded_ids(alice, set(created), timeout_s=90)
    assert len(done) == len(created)
    for task_id in list(created)[::97]:
        assert alice.get(f"/v1/tasks/{task_id}").json()["result"]["n"] == created[task_id]
    ran = Counter(task_id for task_id, _ in executions(stack) if task_id in created)
    assert set(ran.values()) == {1}
    assert len(ran) == len(created)


def test_the_batch_path_routes_on_the_real_server(client: Callable[[str], httpx.Client]) -> None:
    alice = client("alice")
    assert alice.get(BATCH).status_code == 405  # not a lookup of a task named "tasks:batch"
    assert alice.post(BATCH, json={"tasks": []}).status_code == 422
    too_many = alice.post(BATCH, json={"tasks": [echo(0)] * 501})
    assert too_many.status_code == 422
    over = alice.post(BATCH, content=b'{"tasks": [' + b"1," * 600_000 + b"1]}")
    assert over.status_code == 413
