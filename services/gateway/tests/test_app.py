"""The gateway's HTTP behaviour over in-memory fakes of the ports (no I/O): error mapping, auth, limits."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.testing
import pytest

from tq_gateway.body import BodyLimit
from tq_gateway.settings import GatewaySettings
from tq_gateway.testing import client_over_fakes
from tqcore.errors import StoreUnavailable
from tqcore.testing import InMemoryRegistry, InMemoryTaskStore

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
ECHO = {"type": "echo", "group": "team-a", "payload": {"x": 1}}


class UnavailableStore(InMemoryTaskStore):
    """A store whose every write is throttled."""

    def create(self, *args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("throttled (fake)")


class BrokenStore(InMemoryTaskStore):
    """A store with a bug."""

    def get(self, task_id: str) -> Any:
        raise RuntimeError("secret internal detail")


def client(store: InMemoryTaskStore | None = None, **settings: Any) -> falcon.testing.TestClient:
    return client_over_fakes(GatewaySettings(**settings), store=store)


def test_a_throttled_store_is_a_503_with_retry_after() -> None:
    response = client(UnavailableStore()).simulate_post("/v1/tasks", json=ECHO, headers=ALICE)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"


def test_an_unexpected_error_is_a_500_without_internals() -> None:
    response = client(BrokenStore()).simulate_get("/v1/tasks/t-1", headers=ALICE)
    assert response.status_code == 500
    assert response.json["status"] == 500
    assert "secret" not in response.text
    assert "Traceback" not in response.text


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    response = client(max_body_bytes=2048).simulate_post(
        "/v1/tasks", body=b"{}" * 2000, headers={**ALICE, "content-type": "application/json"}
    )
    assert response.status_code == 413


def test_a_body_over_the_limit_without_a_length_is_refused() -> None:
    # A chunked upload declares no length: the middleware must still stop reading at the limit.
    environ = falcon.testing.create_environ(path="/v1/tasks", method="POST", body=b"[" + b"1," * 3000 + b"1]")
    del environ["CONTENT_LENGTH"]
    environ["wsgi.input_terminated"] = True  # as gunicorn sets for chunked requests
    with pytest.raises(falcon.HTTPContentTooLarge):
        BodyLimit(2048).process_request(falcon.Request(environ), falcon.Response())
    small = falcon.testing.create_environ(path="/v1/tasks", method="POST", body=b'{"a": 1}')
    del small["CONTENT_LENGTH"]
    small["wsgi.input_terminated"] = True
    request = falcon.Request(small)
    BodyLimit(2048).process_request(request, falcon.Response())
    assert request.context.body == b'{"a": 1}'


def test_header_and_body_idempotency_keys_must_agree() -> None:
    response = client().simulate_post(
        "/v1/tasks", json={**ECHO, "idempotency_key": "a"}, headers={**ALICE, "Idempotency-Key": "b"}
    )
    assert response.status_code == 400


def test_submit_answers_location_and_etag_and_get_reads_it_back() -> None:
    api = client()
    created = api.simulate_post("/v1/tasks", json=ECHO, headers=ALICE)
    assert created.status_code == 201
    assert created.headers["location"] == "/v1/tasks/t-1"
    assert created.headers["etag"] == '"2"'
    got = api.simulate_get("/v1/tasks/t-1", headers=ALICE)
    assert got.json["id"] == "t-1"
    assert got.json["status"] == "queued"


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer   ", "dev-alice"])
def test_malformed_authorization_is_a_401_with_a_bearer_challenge(header: str) -> None:
    response = client().simulate_get("/v1/tasks/t-1", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("task_id", ["x" * 3000, "a b", "../etc"])
def test_ids_that_cannot_exist_are_not_found_without_asking_the_store(task_id: str) -> None:
    response = client(BrokenStore()).simulate_get(f"/v1/tasks/{task_id}", headers=ALICE)
    assert response.status_code == 404


def test_unknown_routes_are_problems_too() -> None:
    response = client().simulate_get("/v1/nothing-here", headers=ALICE)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_readyz_waits_for_every_required_service() -> None:
    registry = InMemoryRegistry(["echo"])
    api = client_over_fakes(GatewaySettings(ready_requires=["executor", "scheduler"]), registry=registry)
    first = api.simulate_get("/readyz")
    assert first.status_code == 503
    assert "executor" in first.json["detail"]


class FullStore(InMemoryTaskStore):
    """A store whose items would outgrow DynamoDB's item limit on any change."""

    def commit(self, task: Any, **kwargs: Any) -> None:
        from tqcore.domain.errors import TaskTooLarge

        raise TaskTooLarge(f"task {task.id} would be 401000 bytes (fake)")


def test_a_change_that_would_outgrow_the_item_limit_is_a_413_and_changes_nothing() -> None:
    store = FullStore()
    api = client(store)
    created = api.simulate_post("/v1/tasks", json=ECHO, headers=ALICE)
    response = api.simulate_patch(f"/v1/tasks/{created.json['id']}", json={"payload": {"y": 2}}, headers=ALICE)
    assert response.status_code == 413, response.text
    assert response.json["type"].endswith("too-large")
    assert store.get(created.json["id"]).payload == {"x": 1}


def test_the_body_limit_cannot_be_set_beyond_what_a_task_item_holds() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        GatewaySettings(max_body_bytes=400 * 1024)
