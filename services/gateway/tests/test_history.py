"""The history and dead-letter endpoints over HTTP, on in-memory fakes: shapes, status codes, who sees what."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import falcon.testing
import pytest

from tq_gateway.testing import client_over_fakes
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo, Status
from tqcore.domain.task import Task
from tqcore.queries import encode_cursor
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
BOB = {"Authorization": "Bearer dev-bob"}
CAROL = {"Authorization": "Bearer dev-carol"}
ADMIN = {"Authorization": "Bearer dev-admin"}
WORKER = "host-a:1"
RUN_FIELDS = {
    "run_id",
    "attempt",
    "status",
    "scheduled_for",
    "started_at",
    "finished_at",
    "duration_ms",
    "worker",
    "error",
    "log_size",
    "log_expires_at",
}


class Api:
    """A gateway over fakes, and a way to put tasks in its store."""

    def __init__(self) -> None:
        self.store = InMemoryTaskStore()
        self.queue = RecordingQueue()
        self.clock = FixedClock()
        self.registry = InMemoryRegistry(["echo"])
        self._ids = (f"t-{n}" for n in itertools.count(1))
        self.http = client_over_fakes(store=self.store, queue=self.queue, registry=self.registry, clock=self.clock)

    def task(self, group: str = "team-a", *, failures: int = 0, max_retries: int = 0) -> Task:
        """A queued task, or one after ``failures`` failed attempts (``failed`` once its budget is spent)."""
        cmd = SubmitTask.model_validate({"type": "echo", "group": group, "retry": {"max_retries": max_retries}})
        task = Task.submit(
            task_id=next(self._ids), owner="alice", now=self.clock.now(), submitted=cmd.model_dump(mode="json"),
            **cmd.task_fields(),
        )  # fmt: skip
        self.store.create(task)
        self.registry.add_group(group)  # as a submit does
        task = task.committed()
        for attempt in range(1, failures + 1):
            if attempt > 1:
                task = self._change(task, lambda t: t.promote(t.next_run_at or self.clock.now()))
            task = self._change(task, lambda t, n=attempt: t.claim(n, WORKER, self.clock.now(), 30))
            task = self._change(
                task, lambda t, n=attempt: t.fail(n, WORKER, ErrorInfo("E", "boom"), self.clock.now(), jitter=0.0)
            )
        return task

    def _change(self, task: Task, change: Callable[[Task], None]) -> Task:
        self.clock.advance(1)
        return mutate(self.store, task, change)

    def get(self, path: str, headers: dict[str, str], **params: Any) -> falcon.testing.Result:
        return self.http.simulate_get(path, headers=headers, params=params or None)

    def post(self, path: str, headers: dict[str, str], body: Any = None) -> falcon.testing.Result:
        return self.http.simulate_post(path, headers=headers, json=body)


@pytest.fixture
def api() -> Api:
    return Api()


def assert_problem(response: falcon.testing.Result, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json["status"] == status
    return dict(response.json)


# ---------------------------------------------------------------------------------------------------- runs
def test_runs_lists_each_attempt_newest_first_with_the_contract_fields(api: Api) -> None:
    task = api.task(failures=3, max_retries=2)
    response = api.get(f"/v1/tasks/{task.id}/runs", ALICE)
    assert response.status_code == 200
    items = response.json["items"]
    assert [(r["attempt"], r["status"]) for r in items] == [(3, "failed"), (2, "failed"), (1, "failed")]
    assert all(set(r) == RUN_FIELDS for r in items)
    assert items[0]["error"] == {"type": "E", "message": "boom"}
    assert items[0]["started_at"].endswith("Z")
    assert items[1]["scheduled_for"] is not None
    assert items[2]["scheduled_for"] is None
    assert response.json["next_cursor"] is None


def test_runs_page_with_an_opaque_cursor(api: Api) -> None:
    task = api.task(failures=3, max_retries=2)
    first = api.get(f"/v1/tasks/{task.id}/runs", ALICE, limit=2)
    assert [r["attempt"] for r in first.json["items"]] == [3, 2]
    cursor = first.json["next_cursor"]
    second = api.get(f"/v1/tasks/{task.id}/runs", ALICE, limit=2, cursor=cursor)
    assert ([r["attempt"] for r in second.json["items"]], second.json["next_cursor"]) == ([1], None)


@pytest.mark.parametrize("limit", ["0", "201", "ten", "-1"])
def test_a_limit_out_of_range_is_a_422_about_the_query_string(api: Api, limit: str) -> None:
    task = api.task()
    body = assert_problem(api.get(f"/v1/tasks/{task.id}/runs", ALICE, limit=limit), 422)
    assert body["detail"] == "the query string is not valid"
    assert body["errors"][0]["loc"] == ["limit"]


@pytest.mark.parametrize("path", ["/v1/tasks/t-1/runs", "/v1/dlq"])
def test_a_malformed_cursor_is_a_400(api: Api, path: str) -> None:
    api.task(failures=1)
    body = assert_problem(api.get(path, ALICE, cursor="not a cursor"), 400)
    assert body["type"] == "urn:tq:problem:invalid-cursor"


# -------------------------------------------------------------------------------------------------- events
def test_events_are_listed_oldest_first(api: Api) -> None:
    task = api.task(failures=1)
    response = api.get(f"/v1/tasks/{task.id}/events", ALICE)
    assert response.status_code == 200
    items = response.json["items"]
    assert [e["seq"] for e in items] == list(range(1, task.version + 1))
    assert [e["type"] for e in items] == ["submitted", "queued", "claimed", "failed", "dead_lettered"]
    assert set(items[0]) == {"seq", "type", "at", "actor", "data"}
    assert items[0]["actor"] == "alice"
    assert items[2]["actor"] == f"executor:{WORKER}"


def test_events_page_forward_with_a_cursor_until_it_is_null(api: Api) -> None:
    task = api.task(failures=2, max_retries=1)  # 9 events
    seen: list[int] = []
    params: dict[str, Any] = {"limit": "4"}
    for _ in range(5):
        body = api.get(f"/v1/tasks/{task.id}/events", ALICE, **params).json
        seen += [e["seq"] for e in body["items"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert seen == list(range(1, task.version + 1))
    assert api.get(f"/v1/tasks/{task.id}/events", ALICE).json["next_cursor"] is None


@pytest.mark.parametrize("limit", ["0", "1001", "x", "-1", "1e3"])
def test_an_out_of_range_events_limit_is_a_422(api: Api, limit: str) -> None:
    task = api.task(failures=1)
    body = assert_problem(api.get(f"/v1/tasks/{task.id}/events", ALICE, limit=limit), 422)
    assert body["errors"][0]["loc"] == ["limit"]


@pytest.mark.parametrize(
    "position", [("events", "99"), ("events", "-1"), ("events", "1.2.3"), ("runs", "3"), ("dlq", "1")]
)
def test_an_events_cursor_not_from_this_listing_is_a_400(api: Api, position: tuple[str, str]) -> None:
    task = api.task(failures=1)  # 5 events: a cursor after seq 99 was never handed out
    cursor = encode_cursor(*position)
    body = assert_problem(api.get(f"/v1/tasks/{task.id}/events", ALICE, cursor=cursor), 400)
    assert body["type"] == "urn:tq:problem:invalid-cursor"


@pytest.mark.parametrize(
    "position",
    [
        "3",  # not a runs position
        "9.8.0",  # before the newest event + 1, read up to 8: past the task's 5 events
        "4.2.0",  # reads up to 2 but shows runs claimed before 4
        "0.0.0",
        "3.3.3",  # a close that is not after what the page reads
        "3.3.4",  # seq 4 is not a task-end event
        "3.3.9",  # past the newest event
        "1.2.3.4",
        "3.3.0x",
    ],
)
def test_a_tampered_runs_cursor_is_a_400(api: Api, position: str) -> None:
    task = api.task(failures=1)  # submitted, queued, claimed, failed, dead_lettered
    body = assert_problem(api.get(f"/v1/tasks/{task.id}/runs", ALICE, cursor=encode_cursor("runs", position)), 400)
    assert body["type"] == "urn:tq:problem:invalid-cursor"


def test_a_runs_cursor_naming_the_tasks_end_pages_on(api: Api) -> None:
    task = api.task(failures=1)
    body = api.get(f"/v1/tasks/{task.id}/runs", ALICE, cursor=encode_cursor("runs", "3.2.5")).json
    assert (body["items"], body["next_cursor"]) == ([], None)  # no run was claimed before seq 3


@pytest.mark.parametrize(("who", "status"), [(ALICE, 404), (BOB, 200), (CAROL, 200), (ADMIN, 200)])
@pytest.mark.parametrize("resource", ["runs", "events"])
def test_history_of_a_task_outside_the_callers_groups_is_not_found(
    api: Api, who: dict[str, str], status: int, resource: str
) -> None:
    task = api.task("team-b", failures=1)
    response = api.get(f"/v1/tasks/{task.id}/{resource}", who)
    assert response.status_code == status
    assert "team-b" not in response.text or status == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/v1/tasks/t-1/runs"), ("GET", "/v1/tasks/t-1/events"), ("POST", "/v1/tasks/t-1/redrive"),
     ("GET", "/v1/dlq"), ("POST", "/v1/dlq/redrive")],
)  # fmt: skip
def test_every_new_endpoint_needs_a_token(api: Api, method: str, path: str) -> None:
    response = api.http.simulate_request(method, path)
    assert_problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


# ------------------------------------------------------------------------------------------ redrive one
def test_redrive_queues_a_failed_task_again(api: Api) -> None:
    task = api.task(failures=1)
    response = api.post(f"/v1/tasks/{task.id}/redrive", ALICE)
    assert response.status_code == 200
    assert (response.json["status"], response.json["attempts"], response.json["retries"]) == ("queued", 0, 0)
    assert response.headers["etag"] == f'"{task.version + 2}"'
    assert [t.id for t in api.queue.sent] == [task.id]
    assert api.get(f"/v1/tasks/{task.id}/events", ALICE).json["items"][-2]["actor"] == "alice"


def test_redrive_of_a_task_that_is_not_failed_is_a_409(api: Api) -> None:
    task = api.task()
    assert_problem(api.post(f"/v1/tasks/{task.id}/redrive", ALICE), 409)
    assert api.queue.sent == []


@pytest.mark.parametrize("task_id", ["t-1", "no-such-task"])
def test_redrive_of_an_invisible_or_unknown_task_is_a_404(api: Api, task_id: str) -> None:
    api.task("team-b", failures=1)
    assert_problem(api.post(f"/v1/tasks/{task_id}/redrive", ALICE), 404)


def test_a_redrive_whose_enqueue_fails_still_answers_200(api: Api) -> None:
    task = api.task(failures=1)
    api.queue.fail_next = 1
    response = api.post(f"/v1/tasks/{task.id}/redrive", ALICE)
    assert (response.status_code, response.json["status"]) == (200, "queued")


# -------------------------------------------------------------------------------------------------- dlq
def test_the_dlq_lists_failed_tasks_newest_first(api: Api) -> None:
    old, _queued, new = api.task(failures=1), api.task(), api.task(failures=1)
    response = api.get("/v1/dlq", ALICE, group="team-a")
    assert response.status_code == 200
    assert [t["id"] for t in response.json["items"]] == [new.id, old.id]
    assert response.json["items"][0]["status"] == "failed"
    assert response.json["next_cursor"] is None


def test_the_dlq_pages_and_merges_the_callers_groups(api: Api) -> None:
    tasks = [api.task(group, failures=1) for group in ("team-a", "team-b", "team-a")]
    first = api.get("/v1/dlq", CAROL, limit=2)
    second = api.get("/v1/dlq", CAROL, limit=2, cursor=first.json["next_cursor"])
    ids = [t["id"] for t in first.json["items"] + second.json["items"]]
    assert ids == [t.id for t in reversed(tasks)]
    assert second.json["next_cursor"] is None
    assert [t["id"] for t in api.get("/v1/dlq", ALICE).json["items"]] == [tasks[2].id, tasks[0].id]


def test_the_dlq_of_another_group_is_a_403_and_an_admin_sees_every_group(api: Api) -> None:
    failed = api.task("team-b", failures=1).id
    api.task("team-a", failures=1)
    assert_problem(api.get("/v1/dlq", ALICE, group="team-b"), 403)
    assert len(api.get("/v1/dlq", ADMIN).json["items"]) == 2
    assert [t["id"] for t in api.get("/v1/dlq", ADMIN, group="team-b").json["items"]] == [failed]


def test_an_invalid_dlq_group_is_a_422(api: Api) -> None:
    assert assert_problem(api.get("/v1/dlq", ALICE, group="../x"), 422)["errors"][0]["loc"] == ["group"]


# ------------------------------------------------------------------------------------------ redrive dlq
def test_dlq_redrive_dry_run_lists_and_changes_nothing(api: Api) -> None:
    tasks = [api.task(failures=1) for _ in range(3)]
    response = api.post("/v1/dlq/redrive", ALICE, {"group": "team-a", "limit": 2, "dry_run": True})
    assert response.status_code == 200
    assert (response.json["count"], response.json["ids"]) == (2, [tasks[2].id, tasks[1].id])
    assert all(api.store.get(t.id).status is Status.FAILED for t in tasks)
    assert api.queue.sent == []


def test_dlq_redrive_skips_ids_of_other_groups_and_live_tasks(api: Api) -> None:
    mine, theirs, queued = api.task(failures=1), api.task("team-b", failures=1), api.task()
    body = {"group": "team-a", "ids": [mine.id, theirs.id, queued.id, "nope"]}
    response = api.post("/v1/dlq/redrive", CAROL, body)
    assert (response.status_code, response.json["count"], response.json["ids"]) == (200, 1, [mine.id])
    assert api.store.get(theirs.id).status is Status.FAILED


def test_dlq_redrive_of_another_group_is_a_403(api: Api) -> None:
    assert_problem(api.post("/v1/dlq/redrive", ALICE, {"group": "team-b"}), 403)


@pytest.mark.parametrize(
    "body",
    [{}, {"group": "team-a", "extra": 1}, {"group": "team-a", "limit": 0}, {"group": "team-a", "limit": 1001},
     {"group": "team-a", "ids": "t-1"}, {"group": "team-a", "ids": ["t"] * 1001}, {"group": "team-a", "dry_run": []}],
)  # fmt: skip
def test_an_invalid_dlq_redrive_body_is_a_422(api: Api, body: dict[str, Any]) -> None:
    assert assert_problem(api.post("/v1/dlq/redrive", ALICE, body), 422)["errors"]


def test_a_dlq_redrive_without_a_json_body_is_a_400(api: Api) -> None:
    assert_problem(api.http.simulate_post("/v1/dlq/redrive", headers=ALICE, body=b"[1"), 400)


# ------------------------------------------------------------------------------------------------ openapi
def test_openapi_describes_every_new_endpoint_and_every_reference_resolves(api: Api) -> None:
    spec = api.http.simulate_get("/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    assert {
        "/v1/tasks/{task_id}/runs": "get",
        "/v1/tasks/{task_id}/events": "get",
        "/v1/tasks/{task_id}/redrive": "post",
        "/v1/dlq": "get",
        "/v1/dlq/redrive": "post",
    }.items() <= {path: next(iter(ops)) for path, ops in spec["paths"].items()}.items()
    for ref in _refs(spec):
        node: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            node = node[part]
        assert isinstance(node, dict), ref
    run = spec["components"]["schemas"]["Run"]["properties"]
    assert set(run) == RUN_FIELDS
    events = spec["paths"]["/v1/tasks/{task_id}/events"]["get"]
    assert [p["$ref"].rsplit("/", 1)[-1] for p in events["parameters"]] == ["TaskId", "EventLimit", "Cursor"]
    limit = spec["components"]["parameters"]["EventLimit"]["schema"]
    assert (limit["default"], limit["maximum"]) == (1000, 1000)
    assert spec["components"]["schemas"]["EventList"]["required"] == ["items", "next_cursor"]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_task_list_pages_newest_first_and_filters_by_status(api: Api) -> None:
    made = [api.task().id for _ in range(3)]
    failed = api.task(failures=1).id
    api.task("team-b")
    first = api.get("/v1/tasks", ALICE, group="team-a", limit="2")
    assert first.status_code == 200, first.text
    assert [t["id"] for t in first.json["items"]] == [failed, made[2]]
    rest = api.get("/v1/tasks", ALICE, group="team-a", cursor=first.json["next_cursor"])
    assert ([t["id"] for t in rest.json["items"]], rest.json["next_cursor"]) == ([made[1], made[0]], None)
    only_failed = api.get("/v1/tasks", ALICE, status="failed")
    assert [t["id"] for t in only_failed.json["items"]] == [failed]
    assert only_failed.json["items"][0]["status"] == "failed"


@pytest.mark.parametrize(
    ("params", "status"),
    [({"status": "done"}, 422), ({"limit": "0"}, 422), ({"limit": "201"}, 422), ({"cursor": "nope!"}, 400)],
)
def test_a_bad_list_query_is_a_problem(api: Api, params: dict[str, str], status: int) -> None:
    assert_problem(api.get("/v1/tasks", ALICE, **params), status)


def test_listing_another_group_is_forbidden_and_an_admin_sees_every_group(api: Api) -> None:
    assert_problem(api.get("/v1/tasks", ALICE, group="team-b"), 403)
    mine = api.post("/v1/tasks", ALICE, {"type": "echo", "group": "team-a"}).json["id"]
    theirs = api.post("/v1/tasks", BOB, {"type": "echo", "group": "team-b"}).json["id"]
    assert [t["id"] for t in api.get("/v1/tasks", ADMIN).json["items"]] == sorted([mine, theirs], reverse=True)
    assert [t["id"] for t in api.get("/v1/tasks", ADMIN, group="team-b").json["items"]] == [theirs]
    assert [t["id"] for t in api.get("/v1/dlq", ADMIN).json["items"]] == []


def test_the_queues_show_every_priority_with_their_counts(api: Api) -> None:
    api.queue.send(api.task())
    api.queue.dead_letter(api.task(failures=1))
    response = api.get("/v1/queues", BOB)
    assert response.status_code == 200, response.text
    queues = {q["priority"]: q for q in response.json["queues"]}
    assert list(queues) == ["high", "normal", "low"]
    assert queues["normal"] == {"name": "tq-normal.fifo", "pool": "default", "priority": "normal", "depth": 1,
                                "in_flight": 0, "dlq_depth": 1}  # fmt: skip
    assert api.get("/v1/queues", {}).status_code == 401


def test_an_unreachable_sqs_is_a_503_asked_once_per_cache_period(api: Api) -> None:
    calls: list[int] = []

    def down(pools: Any = ()) -> list[Any]:
        from tqcore.errors import QueueUnavailable

        calls.append(1)
        raise QueueUnavailable("sqs down (fake)")

    api.queue.depths = down  # type: ignore[method-assign]
    for _ in range(3):
        assert_problem(api.get("/v1/queues", ALICE), 503)
    assert len(calls) == 1
