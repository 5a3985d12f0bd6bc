"""The OpenAPI document: valid OpenAPI 3.1, one operation per route and method, schemas equal to what is served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import falcon
import falcon.testing
import jsonschema_rs
import pytest
import schemathesis

from tq_gateway.auth import is_console
from tq_gateway.openapi import build_spec
from tq_gateway.resources_history import queue_to_dict
from tq_gateway.testing import app_over_fakes, client_over_fakes
from tq_gateway.views import listed_view, task_view
from tqcore.documents import ListedTask
from tqcore.domain.codec import event_to_dict, task_to_dict
from tqcore.domain.model import ErrorInfo, Event, EventType, Priority, Progress, RunStatus, Schedule, Status
from tqcore.domain.runs import Run, run_to_dict
from tqcore.domain.task import Task
from tqcore.ports import QueueDepth

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SPEC = build_spec()


def _app() -> falcon.App[Any, Any]:
    return app_over_fakes()


def _routes(app: falcon.App[Any, Any]) -> set[str]:
    """``METHOD /uri/template`` for every responder a resource defines (not Falcon's default OPTIONS/405)."""

    def walk(nodes: list[Any]) -> Iterator[Any]:
        for node in nodes:
            yield node
            yield from walk(node.children)

    found = set()
    for node in walk(app._router._roots):
        if node.resource is None:
            continue
        for method in falcon.COMBINED_METHODS:
            if callable(getattr(node.resource, f"on_{method.lower()}", None)):
                found.add(f"{method} {node.uri_template}")
    return found


def _documented(spec: dict[str, Any]) -> set[str]:
    return {f"{method.upper()} {path}" for path, item in spec["paths"].items() for method in item}


def _validator(name: str) -> jsonschema_rs.Validator:
    """A validator for one component schema, its ``$ref``s resolved within the document."""
    return jsonschema_rs.validator_for({"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]})


def test_the_document_is_valid_openapi_3_1_and_every_schema_valid_json_schema() -> None:
    assert SPEC["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(SPEC)
    schema.validate()  # the OpenAPI 3.1 meta-schema
    for name, component in SPEC["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(component), name
    assert all(result.ok() for result in schema.get_all_operations())


def test_every_route_is_documented_and_every_documented_operation_is_routed() -> None:
    # The console's pages (``/ui``) are HTML for browsers, not the API: the document leaves them out.
    api = {route for route in _routes(_app()) if not is_console(route.split(" ", 1)[1])}
    assert api == _documented(SPEC)


def test_every_operation_has_one_declared_tag_and_every_tag_a_description() -> None:
    declared = {tag["name"]: tag.get("description") for tag in SPEC["tags"]}
    assert set(declared) == {"tasks", "runs", "dead letters", "queues", "health"}
    assert all(declared.values())
    used = {
        f"{method.upper()} {path}": operation.get("tags")
        for path, item in SPEC["paths"].items()
        for method, operation in item.items()
    }
    assert {name: tags for name, tags in used.items() if not tags or len(tags) != 1 or tags[0] not in declared} == {}
    assert set(declared) == {tags[0] for tags in used.values()}


def test_the_batch_result_schema_takes_what_the_batch_answers() -> None:
    bodies = [{"type": "echo", "group": "team-a"}, {"type": "echo", "group": "team-b"}, {"type": 1}]
    response = client_over_fakes().simulate_post(
        "/v1/tasks:batch", json={"tasks": bodies}, headers={"Authorization": "Bearer dev-alice"}
    )
    assert [item["status"] for item in response.json["items"]] == [201, 403, 422]
    _validator("BatchResult").validate(response.json)
    _validator("SubmitBatch").validate({"tasks": bodies[:2]})
    assert not _validator("SubmitBatch").is_valid({"tasks": []})


def test_the_gateway_serves_the_document() -> None:
    response = falcon.testing.TestClient(_app()).simulate_get("/openapi.json")
    assert response.status_code == 200
    assert response.json == SPEC


def test_every_operation_documents_auth_and_its_public_ones_need_none() -> None:
    public = {"/healthz", "/readyz", "/metrics", "/openapi.json"}
    assert SPEC["components"]["securitySchemes"]["bearerAuth"].items() >= {"type": "http", "scheme": "bearer"}.items()
    assert SPEC["security"] == [{"bearerAuth": []}]
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if path in public:
                assert operation["security"] == [], (method, path)
                continue
            assert "security" not in operation, (method, path)
            assert {"401", "429", "503"} <= set(operation["responses"]), (method, path)
            assert operation["operationId"]


def _task(**fields: Any) -> Task:
    return Task(id="01abc", type="echo", group="team-a", owner="alice", created_at=NOW, version=1, **fields)


TASKS = [
    _task(),
    _task(
        status=Status.RUNNING,
        attempts=2,
        payload={"x": [1, None]},
        schedule=Schedule(cron="0 0 * * MON", timezone="Europe/Paris", start_at=NOW, end_at=None),
        worker="host:1",
        claim_seq=4,
        cancel_requested=True,
        next_slot_at=NOW,
        waiting_slot=NOW,
        run_slot=NOW,
        parent_id="01abd",
        last_error=ErrorInfo("ValueError", "boom"),
        result=7,
        progress=Progress(0.5, "half way", NOW),
    ),
    _task(status=Status.RUNNING, progress=Progress(None, None, NOW)),
    _task(schedule=Schedule(at=NOW)),
    _task(schedule=Schedule(every_s=90.5, start_at=NOW, end_at=datetime(2027, 1, 1, tzinfo=UTC))),
]


#: What the store keeps for the scheduler, the reaper and the executor, and clients must not come to depend on.
INTERNALS = {"claim_seq", "poison_strikes", "resends", "run_slot", "waiting_slot", "next_slot_at", "trace_context"}


@pytest.mark.parametrize("task", TASKS)
def test_the_task_schema_names_exactly_what_the_gateway_serves(task: Task) -> None:
    served = task_view(task)
    schema = SPEC["components"]["schemas"]["Task"]
    assert list(served) == list(schema["properties"]) == schema["required"]
    _validator("Task").validate(served)


@pytest.mark.parametrize("task", TASKS)
def test_a_listed_task_is_served_as_the_same_view_from_its_stored_document(task: Task) -> None:
    stored = ListedTask.from_doc(json.dumps(task_to_dict(task)))
    assert json.loads(listed_view(stored.doc)) == json.loads(json.dumps(task_view(task)))


def test_no_internal_bookkeeping_is_shown_in_the_schema_or_in_any_answer() -> None:
    assert not INTERNALS & set(SPEC["components"]["schemas"]["Task"]["properties"])
    # Given a task submitted through the gateway
    api = client_over_fakes()
    alice = {"Authorization": "Bearer dev-alice"}
    created = api.simulate_post("/v1/tasks", json={"type": "echo", "group": "team-a"}, headers=alice)
    assert created.status_code == 201, created.text
    # Then neither its answer, nor a read, nor a listing shows the bookkeeping
    read = api.simulate_get(f"/v1/tasks/{created.json['id']}", headers=alice)
    listed = api.simulate_get("/v1/tasks", params={"group": "team-a"}, headers=alice)
    assert [len(listed.json["items"])] == [1]
    for shown in (created.json, read.json, listed.json["items"][0]):
        assert list(shown) == list(SPEC["components"]["schemas"]["Task"]["properties"])
        assert not INTERNALS & set(shown)


def test_the_run_and_event_schemas_name_exactly_what_the_codec_emits() -> None:
    runs = [
        Run(seq=3, run_id="1.1", attempt=1, status=RunStatus.RUNNING, started_at=NOW, worker=None),
        Run(
            seq=5,
            run_id="1.2",
            attempt=2,
            status=RunStatus.FAILED,
            started_at=NOW,
            worker="h:1",
            scheduled_for=NOW,
            finished_at=NOW,
            duration_ms=12,
            error=ErrorInfo("E", "m"),
            log_size=10,
            log_expires_at=NOW,
        ),
    ]
    for run in runs:
        emitted = run_to_dict(run)
        assert set(emitted) == set(SPEC["components"]["schemas"]["Run"]["properties"])
        _validator("Run").validate(emitted)
    event = event_to_dict(Event(seq=1, type=EventType.SUBMITTED, at=NOW, actor="alice", data={"at": NOW}))
    assert set(event) == set(SPEC["components"]["schemas"]["Event"]["properties"])
    _validator("Event").validate(event)


def test_the_queue_schema_names_exactly_what_the_gateway_emits() -> None:
    emitted = queue_to_dict(QueueDepth(name="tq-high.fifo", priority=Priority.HIGH, depth=3, in_flight=1, dlq_depth=0))
    assert set(emitted) == set(SPEC["components"]["schemas"]["Queue"]["properties"])
    _validator("Queue").validate(emitted)


@pytest.mark.parametrize(
    ("schema", "instance", "valid"),
    [
        ("ScheduleSpec", {"at": "2026-01-01T00:00:00Z"}, True),
        ("ScheduleSpec", {"every_s": 60, "start_at": "2026-01-01T00:00:00Z", "at": None}, True),
        ("ScheduleSpec", {"cron": "0 0 * * MON", "timezone": "UTC"}, True),
        ("ScheduleSpec", {}, False),
        ("ScheduleSpec", {"at": "2026-01-01T00:00:00Z", "every_s": 60}, False),
        ("ScheduleSpec", {"every_s": 60, "timezone": "UTC"}, False),
        ("UpdateTask", {}, False),
        ("UpdateTask", {"payload": None}, True),
        ("SubmitTask", {"type": "echo", "group": "team-a", "extra": 1}, False),
        ("RedriveDeadLetters", {"group": "team-a", "limit": 1001}, False),
    ],
)
def test_the_request_schemas_say_what_the_commands_check(schema: str, instance: Any, valid: bool) -> None:
    assert _validator(schema).is_valid(instance) is valid
