"""``POST /v1/tasks:cancel`` over the in-memory fakes: routing, the answer, the caller's group only, errors."""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from tq_gateway.testing import client_over_fakes
from tqcore.testing import FixedClock, InMemoryTaskStore
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
BOB = {"Authorization": "Bearer dev-bob"}
CANCEL = "/v1/tasks:cancel"


@pytest.fixture
def store() -> InMemoryTaskStore:
    return InMemoryTaskStore()


@pytest.fixture
def client(store: InMemoryTaskStore) -> falcon.testing.TestClient:
    return client_over_fakes(store=store)


def submit(client: falcon.testing.TestClient, headers: dict[str, str], group: str, **body: Any) -> str:
    response = client.simulate_post("/v1/tasks", json={"type": "echo", "group": group, **body}, headers=headers)
    assert response.status_code == 201
    return str(response.json["id"])


def status(client: falcon.testing.TestClient, task_id: str) -> str:
    return str(client.simulate_get(f"/v1/tasks/{task_id}", headers=ALICE).json["status"])


def test_a_dry_run_answers_what_would_go_and_the_real_run_cancels_it(client: falcon.testing.TestClient) -> None:
    # Given two queued tasks and a scheduled one of team-a, and one of team-b
    queued = [submit(client, ALICE, "team-a") for _ in range(2)]
    later = submit(client, ALICE, "team-a", schedule={"at": "2999-01-01T00:00:00Z"})
    theirs = submit(client, BOB, "team-b")
    # When alice first asks for a dry run of the queued ones
    dry = client.simulate_post(CANCEL, json={"group": "team-a", "status": "queued", "dry_run": True}, headers=ALICE)
    # Then it names them, newest first, and nothing changed
    assert dry.status_code == 200
    assert dry.json == {"count": 2, "ids": queued[::-1], "dry_run": True}
    assert {status(client, task_id) for task_id in queued} == {"queued"}
    # When she cancels them
    done = client.simulate_post(CANCEL, json={"group": "team-a", "status": "queued"}, headers=ALICE)
    # Then exactly those are cancelled, by her
    assert done.json == {"count": 2, "ids": queued[::-1], "dry_run": False}
    assert [status(client, task_id) for task_id in queued] == ["cancelled", "cancelled"]
    assert status(client, later) == "scheduled"
    events = client.simulate_get(f"/v1/tasks/{queued[0]}/events", headers=ALICE).json["items"]
    assert events[-1]["type"] == "cancelled"
    assert events[-1]["actor"] == "alice"
    assert client.simulate_get(f"/v1/tasks/{theirs}", headers=BOB).json["status"] == "queued"


def test_a_running_task_is_asked_to_stop(client: falcon.testing.TestClient, store: InMemoryTaskStore) -> None:
    task_id = submit(client, ALICE, "team-a")
    mutate(store, store.get(task_id), lambda t: t.claim(1, "host:1", FixedClock().now(), 30))
    done = client.simulate_post(CANCEL, json={"group": "team-a", "ids": [task_id]}, headers=ALICE)
    assert done.json["ids"] == [task_id]
    task = client.simulate_get(f"/v1/tasks/{task_id}", headers=ALICE).json
    assert (task["status"], task["cancel_requested"]) == ("running", True)


def test_another_groups_tasks_are_forbidden_by_group_and_skipped_by_id(client: falcon.testing.TestClient) -> None:
    alices = submit(client, ALICE, "team-a")
    # Bob may not name alice's group (as a submit into it is 403)
    refused = client.simulate_post(CANCEL, json={"group": "team-a", "dry_run": True}, headers=BOB)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    # and her task's id, named as his group's, is skipped as an id of no task is
    skipped = client.simulate_post(CANCEL, json={"group": "team-b", "ids": [alices, "no-such"]}, headers=BOB)
    assert skipped.json == {"count": 0, "ids": [], "dry_run": False}
    assert status(client, alices) == "queued"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"group": "team-a", "limit": 0},
        {"group": "team-a", "limit": 1001},
        {"group": "team-a", "status": "paused-ish"},
        {"group": "team-a", "ids": "t-1"},
        {"group": "team-a", "nope": 1},
    ],
)
def test_an_invalid_body_is_a_422_problem(client: falcon.testing.TestClient, body: dict[str, Any]) -> None:
    response = client.simulate_post(CANCEL, json=body, headers=ALICE)
    assert response.status_code == 422
    assert response.json["errors"]


def test_bulk_cancel_needs_authentication(client: falcon.testing.TestClient) -> None:
    assert client.simulate_post(CANCEL, json={"group": "team-a"}).status_code == 401


def test_a_get_of_the_cancel_path_is_a_405_not_a_task_lookup(client: falcon.testing.TestClient) -> None:
    response = client.simulate_get(CANCEL, headers=ALICE)
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
