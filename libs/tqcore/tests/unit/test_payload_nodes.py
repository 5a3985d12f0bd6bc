"""Payloads are bounded in JSON nodes as well as bytes: what counts, where the bound is, and that it is cheap."""

from __future__ import annotations

import time

import pytest

from tqcore.domain.commands import MAX_PAYLOAD_NODES, PAYLOAD_NODES, SubmitTask, UpdateTask, json_nodes
from tqcore.domain.errors import PayloadTooLarge, TaskTooLarge

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "nodes"),
    [(None, 1), ("s", 1), ([], 1), ({}, 1), ([1, "a", None], 4), ({"a": 1}, 3), ({"a": [{}, {"b": True}]}, 7)],
)
def test_every_value_and_every_object_key_is_a_node(value: object, nodes: int) -> None:
    assert json_nodes(value, 100) == nodes


def submit(payload: object, **context: int) -> SubmitTask:
    return SubmitTask.model_validate({"type": "echo", "group": "team-a", "payload": payload}, context=context)


def test_a_payload_at_the_bound_is_accepted_and_one_node_more_is_too_large() -> None:
    at_bound = [0] * (MAX_PAYLOAD_NODES - 1)  # the list and its elements
    assert submit(at_bound).payload == at_bound
    with pytest.raises(PayloadTooLarge, match=f"more than {MAX_PAYLOAD_NODES} JSON nodes"):
        submit([*at_bound, 0])


def test_the_bound_comes_from_the_validation_context_for_submit_and_patch() -> None:
    with pytest.raises(PayloadTooLarge):
        submit({"a": [1, 2, 3]}, **{PAYLOAD_NODES: 5})
    with pytest.raises(PayloadTooLarge):
        UpdateTask.model_validate({"payload": [[[]]] * 3}, context={PAYLOAD_NODES: 5})
    assert UpdateTask.model_validate({"payload": [1, 2]}, context={PAYLOAD_NODES: 5}).payload == [1, 2]
    assert issubclass(PayloadTooLarge, TaskTooLarge)  # answered 413 like any task too large to keep


def test_counting_a_hostile_payload_stops_at_the_bound() -> None:
    # 256 KiB of [{},{},...] is 87,000 nodes; a million is refused after looking at about the bound's worth
    hostile = [{}] * 1_000_000
    started = time.perf_counter()
    assert json_nodes(hostile, MAX_PAYLOAD_NODES) == MAX_PAYLOAD_NODES + 1
    deep = [[{"k": [0] * 50}] * 50] * 50
    assert json_nodes(deep, MAX_PAYLOAD_NODES) == MAX_PAYLOAD_NODES + 1
    assert time.perf_counter() - started < 0.5
