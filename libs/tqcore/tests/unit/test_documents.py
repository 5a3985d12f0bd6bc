"""Stored task documents: what a listing reads of them, and what it serves (the task resource, payload unparsed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tqcore.documents import RESOURCE_KEYS, ListedTask, page_json
from tqcore.domain.codec import task_to_dict
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Status
from tqcore.domain.task import Task

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def running(payload: object) -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", "payload": payload})
    task = Task.submit(task_id="t-1", owner="alice", now=T0, submitted={}, **cmd.task_fields()).committed()
    task.claim(1, "host:1", T0, 30)
    return task.committed()


def test_a_document_is_served_as_the_task_resource() -> None:
    task = running({"é": ["ü", 1.5, None, {"deep": [True]}]})
    listed = ListedTask.from_doc(json.dumps(task_to_dict(task), separators=(",", ":"), ensure_ascii=False))
    assert (listed.id, listed.status, listed.type, listed.claim_seq) == ("t-1", Status.RUNNING, "echo", task.claim_seq)
    assert json.loads(listed.doc) == task_to_dict(task)


def test_a_lease_overlay_changes_the_tasks_lease_expiry_and_nothing_in_its_payload() -> None:
    # A payload may hold a key named like the task's own fields: only the task's field changes.
    task = running({"lease_expires_at": "mine", "claim_seq": 99})
    assert task.claim_seq is not None
    listed = ListedTask.from_doc(json.dumps(task_to_dict(task)))
    moved = listed.with_lease(task.claim_seq, datetime(2026, 3, 1, 12, 5, tzinfo=UTC))
    served = json.loads(moved.doc)
    assert served["lease_expires_at"] == "2026-03-01T12:05:00.000Z"
    assert served["payload"] == {"lease_expires_at": "mine", "claim_seq": 99}
    assert {k: v for k, v in served.items() if k != "lease_expires_at"} == {
        k: v for k, v in task_to_dict(task).items() if k != "lease_expires_at"
    }
    assert listed.with_lease(task.claim_seq + 1, T0) is listed  # another claim's lease is not this attempt's


def test_a_document_of_an_older_shape_is_served_with_todays_fields() -> None:
    # Given a document written before fields such as run_count and trace_context existed
    current = task_to_dict(running({"x": 1}))
    old = {k: v for k, v in current.items() if k not in ("run_count", "trace_context", "parent_id")}
    # When it is listed, then it has every field of today's resource, with the codec's defaults
    served = json.loads(ListedTask.from_doc(json.dumps(old)).doc)
    assert served.keys() == RESOURCE_KEYS
    assert (served["run_count"], served["trace_context"], served["payload"]) == (0, None, {"x": 1})


ODD_STATUS = json.dumps({**task_to_dict(running(1)), "status": "odd"})


@pytest.mark.parametrize("doc", ["{not json", "[]", '{"id": "t-1"}', ODD_STATUS])
def test_what_is_not_a_task_document_is_a_value_error(doc: str) -> None:
    with pytest.raises(ValueError, match="not a task document"):
        ListedTask.from_doc(doc)


def test_a_page_body_splices_the_documents_in() -> None:
    items = [ListedTask.from_doc(json.dumps(task_to_dict(running([n])))) for n in range(2)]
    docs = [item.doc for item in items]
    assert json.loads(page_json(docs, "abc")) == {"items": [json.loads(doc) for doc in docs], "next_cursor": "abc"}
    assert json.loads(page_json([], None)) == {"items": [], "next_cursor": None}
