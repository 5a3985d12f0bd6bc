"""The client's models against the gateway's OpenAPI document: a field added, renamed or retyped on one side fails
here, so ``tq.models`` cannot drift from what the API serves."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from tq import models
from tq_gateway.openapi import build_spec

pytestmark = pytest.mark.unit

SPEC = build_spec()["components"]["schemas"]
#: Each model and the component schema it reads.
PAIRS: list[tuple[type[BaseModel], str]] = [
    (models.Task, "Task"),
    (models.Retry, "Retry"),
    (models.Schedule, "Schedule"),
    (models.LastError, "LastError"),
    (models.Progress, "ProgressView"),
    (models.Run, "Run"),
    (models.Event, "Event"),
    (models.Queue, "Queue"),
    (models.OverviewQueue, "OverviewQueue"),
    (models.OverviewPool, "OverviewPool"),
    (models.OverviewMinute, "OverviewMinute"),
    (models.OverviewScheduler, "OverviewScheduler"),
    (models.Overview, "Overview"),
    (models.Redriven, "Redriven"),
    (models.CancelledTasks, "CancelledTasks"),
    (models.Problem, "Problem"),
    (models.Page[models.Task], "TaskPage"),
    (models.Page[models.Run], "RunPage"),
    (models.Page[models.Event], "EventList"),
]


def kinds(schema: dict[str, Any], components: dict[str, Any]) -> frozenset[str]:
    """The JSON types a schema admits (``any`` for no constraint), following ``$ref`` and unions."""
    if "$ref" in schema:
        return kinds(components[schema["$ref"].rsplit("/", 1)[1]], components)
    for union in ("anyOf", "oneOf"):
        if union in schema and "type" not in schema and "properties" not in schema:
            return frozenset().union(*(kinds(member, components) for member in schema[union]))
    declared = schema.get("type")
    if declared is None:
        return frozenset({"object"}) if "properties" in schema else frozenset({"any"})
    return frozenset([declared] if isinstance(declared, str) else declared)


def fields(schema: dict[str, Any], components: dict[str, Any], *, optional_null: bool) -> dict[str, Any]:
    """Each property's (required, JSON types); with ``optional_null``, an optional property's ``null`` is left out
    (a model reads an absent key as ``None``)."""
    required = set(schema.get("required", []))
    shaped = {}
    for name, prop in schema["properties"].items():
        types = kinds(prop, components)
        if optional_null and name not in required:
            types -= {"null"}
        shaped[name] = (name in required, types)
    return shaped


@pytest.mark.parametrize(("model", "component"), PAIRS, ids=[component for _, component in PAIRS])
def test_the_model_reads_exactly_the_schema_the_api_serves(model: type[BaseModel], component: str) -> None:
    own = model.model_json_schema(ref_template="#/$defs/{model}")
    served = fields(SPEC[component], SPEC, optional_null=False)
    assert fields(own, own.get("$defs", {}), optional_null=True) == served


def test_the_stream_progress_event_is_the_task_progress_and_its_type() -> None:
    assert set(models.ProgressEvent.model_fields) == {"type", *models.Progress.model_fields}


def test_the_statuses_a_task_ends_in_are_the_api_terminal_ones() -> None:
    from tqcore.domain.model import Status

    assert {s.value for s in Status if s.is_terminal} == models.ENDED


def test_a_batch_item_reads_both_answers_of_a_batch() -> None:
    own = models.BatchItem.model_json_schema(ref_template="#/$defs/{model}")
    mine = fields(own, own["$defs"], optional_null=True)
    for component in ("BatchSubmitted", "BatchRefused"):
        served = fields(SPEC[component], SPEC, optional_null=False)
        assert {name: kinds for name, (_, kinds) in served.items()} == {
            name: kinds for name, (_, kinds) in mine.items() if name in served
        }
    assert set(mine) == set(SPEC["BatchSubmitted"]["properties"]) | set(SPEC["BatchRefused"]["properties"])
