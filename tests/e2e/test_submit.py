"""Submit and read over HTTP against the composed stack (gateway, executors, scheduler, reaper)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import MOTO_TRANSACTIONS_NOT_ATOMIC, executions, wait_for_status
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

ECHO = {"type": "echo", "group": "team-a", "payload": {"x": 1}}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_an_echo_task_succeeds_within_5_s_and_starts_within_1_s(client: Callable[[str], httpx.Client]) -> None:
    alice = client("alice")
    # When alice submits an echo task
    created = alice.post("/v1/tasks", json=ECHO)
    # Then it is accepted with its location and ETag
    assert created.status_code == 201, created.text
    task = created.json()
    assert created.headers["location"] == f"/v1/tasks/{task['id']}"
    assert created.headers["etag"] == f'"{task["version"]}"'
    assert (task["status"], task["owner"], task["group"]) == ("queued", "alice", "team-a")
    # and it succeeds with its payload as result, starting less than a second after it was created
    done = wait_for_status(alice, task["id"], {"succeeded", "failed"}, timeout_s=5)
    assert done["status"] == "succeeded"
    assert done["result"] == {"x": 1}
    assert (ts(done["started_at"]) - ts(done["created_at"])).total_seconds() < 1
    assert done["attempts"] == 1
    assert done["retries"] == 0
    assert done["worker"] is None
    assert all(done[k].endswith("Z") for k in ("created_at", "started_at", "finished_at"))


@MOTO_TRANSACTIONS_NOT_ATOMIC
def test_twenty_concurrent_submits_with_one_key_make_one_task_run_once(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    alice = client("alice")
    body = {**ECHO, "payload": {"n": 20}}
    headers = {"Idempotency-Key": "same-key-20"}
    # When the same submit arrives 20 times at once
    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(lambda _: alice.post("/v1/tasks", json=body, headers=headers), range(20)))
    # Then exactly one created the task and the other 19 replayed it
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 19 + [201], [r.text for r in responses if r.status_code not in (200, 201)]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    replays = [r for r in responses if r.status_code == 200]
    assert all(r.headers.get("idempotent-replayed") == "true" for r in replays)
    (task_id,) = ids
    wait_for_status(alice, task_id, {"succeeded"}, timeout_s=10)
    # and the handler ran exactly once
    assert [e for e in executions(stack) if e[0] == task_id] == [(task_id, 1)]
    # When the same key comes with another body, Then 409
    conflict = alice.post("/v1/tasks", json={**body, "payload": {"n": 21}}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"].startswith("application/problem+json")
    # The key in the body works like the header
    again = alice.post("/v1/tasks", json={**body, "idempotency_key": "same-key-20"})
    assert (again.status_code, again.json()["id"]) == (200, task_id)


def test_other_groups_tasks_are_invisible_and_wider_principals_see_them(client: Callable[[str], httpx.Client]) -> None:
    task_id = client("bob").post("/v1/tasks", json={**ECHO, "group": "team-b"}).json()["id"]
    assert client("alice").get(f"/v1/tasks/{task_id}").status_code == 404
    assert client("carol").get(f"/v1/tasks/{task_id}").status_code == 200
    assert client("admin").get(f"/v1/tasks/{task_id}").status_code == 200
    assert client("alice").get("/v1/tasks/no-such-task").status_code == 404


def test_health_readiness_and_openapi_need_no_token(stack: Stack) -> None:
    assert httpx.get(f"{stack.url}/healthz").status_code == 200
    # Readiness reflects presence beats, which a loaded machine can delay: poll briefly, as a load balancer would.
    deadline = time.monotonic() + 15
    ready = httpx.get(f"{stack.url}/readyz")
    while ready.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
        ready = httpx.get(f"{stack.url}/readyz")
    assert ready.status_code == 200, ready.text
    assert {"executor", "scheduler", "reaper"} <= set(ready.json()["services"])
    spec = httpx.get(f"{stack.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert {"/v1/tasks", "/v1/tasks/{task_id}", "/readyz"} <= set(spec["paths"])
    metrics = httpx.get(f"{stack.url}/metrics")
    assert metrics.status_code == 200
    assert "tq_aws_calls_total" in metrics.text


BAD_REQUESTS = [
    ("malformed JSON", "dev-alice", b'{"type": "echo", ', 400),
    ("not an object", "dev-alice", b"[1, 2]", 400),
    ("empty body", "dev-alice", b"", 400),
    ("missing type", "dev-alice", json.dumps({"group": "team-a"}).encode(), 422),
    ("missing group", "dev-alice", json.dumps({"type": "echo"}).encode(), 422),
    ("bad priority", "dev-alice", json.dumps({**ECHO, "priority": "urgent"}).encode(), 422),
    ("unknown field", "dev-alice", json.dumps({**ECHO, "priorty": "high"}).encode(), 422),
    ("timeout out of range", "dev-alice", json.dumps({**ECHO, "timeout_s": 0}).encode(), 422),
    ("unknown type", "dev-alice", json.dumps({**ECHO, "type": "no-such-type"}).encode(), 422),
    ("group not mine", "dev-alice", json.dumps({**ECHO, "group": "team-b"}).encode(), 403),
    ("no token", None, json.dumps(ECHO).encode(), 401),
    ("unknown token", "dev-mallory", json.dumps(ECHO).encode(), 401),
    ("oversize body", "dev-alice", json.dumps({**ECHO, "payload": "x" * (300 * 1024)}).encode(), 413),
    ("NaN in payload", "dev-alice", b'{"type": "echo", "group": "team-a", "payload": {"x": NaN}}', 400),
    ("number too large", "dev-alice", b'{"type": "echo", "group": "team-a", "payload": {"x": 1e999}}', 400),
    ("lone surrogate", "dev-alice", b'{"type": "echo", "group": "team-a", "payload": "\\ud800"}', 400),
    (
        "nested too deeply",
        "dev-alice",
        b'{"type": "echo", "group": "team-a", "payload": ' + b"[" * 100000 + b"]" * 100000 + b"}",
        400,
    ),
    ("year 1", "dev-alice", json.dumps({**ECHO, "expires_at": "0001-01-01T00:00:00Z"}).encode(), 422),
    ("past year 9000", "dev-alice", json.dumps({**ECHO, "expires_at": "9999-12-31T23:59:59-05:00"}).encode(), 422),
    ("naive timestamp", "dev-alice", json.dumps({**ECHO, "schedule": {"at": "2030-01-01T00:00:00"}}).encode(), 422),
    ("bad cron", "dev-alice", json.dumps({**ECHO, "schedule": {"cron": "61 * * * *"}}).encode(), 422),
]


@pytest.mark.parametrize(("case", "token", "body", "status"), BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_input_gets_a_problem_and_writes_nothing(
    stack: Stack, case: str, token: str | None, body: bytes, status: int
) -> None:
    headers = {"content-type": "application/json", "Idempotency-Key": f"bad-{case}"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    before = stack_item_count(stack)
    response = httpx.post(f"{stack.url}/v1/tasks", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert {"type", "title", "status", "detail"} <= set(problem)
    assert problem["status"] == status
    assert "Traceback" not in response.text
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if status == 422 and case != "unknown type":
        assert problem["errors"]
        assert all({"loc", "msg"} <= set(e) for e in problem["errors"])
    assert stack_item_count(stack) == before


REFUSED_BEFORE_THE_APP = [
    ("request line too long", b"GET /v1/tasks/" + b"x" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414),
    ("header too large", b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431),
    ("not HTTP", b"HELLO THERE\r\n\r\n", 400),
]


@pytest.mark.parametrize(("case", "raw", "status"), REFUSED_BEFORE_THE_APP, ids=[c[0] for c in REFUSED_BEFORE_THE_APP])
def test_requests_refused_before_the_app_still_get_a_problem(stack: Stack, case: str, raw: bytes, status: int) -> None:
    # When a request breaks HTTP or gunicorn's size limits, so that the app never sees it
    host, port = stack.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(raw)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    # Then the answer is still problem+json, not gunicorn's HTML page
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status} "), lines[0]
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["content-length"]) == len(body)
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["type"].startswith("urn:tq:problem:")
    assert problem["title"]
    assert problem["detail"]


def test_chunked_bodies_are_refused_with_a_411_that_asks_for_a_content_length(
    client: Callable[[str], httpx.Client],
) -> None:
    def chunked(data: bytes) -> object:
        yield from (data[i : i + 4096] for i in range(0, len(data), 4096))

    # A chunked body would be read by a thread without a deadline on the whole (see tq_gateway.worker)
    refused = client("alice").post(
        "/v1/tasks", content=chunked(json.dumps(ECHO).encode()), headers={"content-type": "application/json"}
    )
    assert refused.status_code == 411, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "Content-Length" in refused.json()["detail"]


def stack_item_count(stack: Stack) -> int:
    """Task, event and idempotency items in the stack's table."""
    from tqcore.adapters import aws
    from tqcore.settings import CoreSettings

    settings = CoreSettings(endpoint_url=stack.config.endpoint_url, prefix=stack.config.prefix)
    ddb = aws.client(settings, "dynamodb")
    count, start = 0, None
    while True:
        page = ddb.scan(TableName=settings.table_name, **({"ExclusiveStartKey": start} if start else {}))
        count += sum(1 for item in page["Items"] if item["PK"]["S"].startswith(("TASK#", "IDEM#")))
        start = page.get("LastEvaluatedKey")
        if not start:
            return count


def test_a_one_shot_task_runs_at_its_time_not_before(client: Callable[[str], httpx.Client]) -> None:
    alice = client("alice")
    at = datetime.now(UTC) + timedelta(seconds=3)
    created = alice.post("/v1/tasks", json={**ECHO, "schedule": {"at": at.isoformat()}})
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["status"] == "scheduled"
    assert ts(task["next_run_at"]) == at.replace(microsecond=at.microsecond // 1000 * 1000)
    done = wait_for_status(alice, task["id"], {"succeeded", "failed"}, timeout_s=10)
    assert done["status"] == "succeeded"
    started = ts(done["started_at"])
    assert started >= at
    assert (started - at).total_seconds() < 2.5  # scheduler polls every second, then the queue hand-off


def test_a_flaky_task_is_retried_after_its_backoff_and_succeeds(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    alice = client("alice")
    body = {"type": "flaky", "group": "team-a", "payload": {"fail_times": 2}, "retry": {"backoff_base_s": 0.5}}
    task_id = alice.post("/v1/tasks", json=body).json()["id"]
    done = wait_for_status(alice, task_id, {"succeeded", "failed"}, timeout_s=20)
    assert done["status"] == "succeeded"
    assert done["result"] == {"attempt": 3}
    assert (done["attempts"], done["retries"]) == (3, 2)
    assert [e for e in executions(stack) if e[0] == task_id] == [(task_id, 1), (task_id, 2), (task_id, 3)]


def test_a_task_out_of_retries_is_failed_with_its_last_error(client: Callable[[str], httpx.Client]) -> None:
    alice = client("alice")
    body = {
        "type": "flaky",
        "group": "team-a",
        "payload": {"fail_times": 5},
        "retry": {"max_retries": 1, "backoff_base_s": 0.5},
    }
    task_id = alice.post("/v1/tasks", json=body).json()["id"]
    done = wait_for_status(alice, task_id, {"succeeded", "failed"}, timeout_s=20)
    assert done["status"] == "failed"
    assert done["attempts"] == 2
    assert done["last_error"]["type"] == "DemoError"
    assert "attempt 2" in done["last_error"]["message"]
