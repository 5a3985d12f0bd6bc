"""The attempt span's attributes and parent come from the dispatch, decoded by the consumer or as sent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry import trace

from tq_executor.middleware.tracing import _attributes, _dispatch, _parent
from tqcore.dispatch import Dispatch
from tqcore.domain.task import Task

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def a_dispatch() -> Dispatch:
    task = Task.submit(task_id="t-1", type="echo", group="team-a", owner="alice", now=T0, submitted={})
    task.trace_context = {"traceparent": TRACEPARENT}
    return Dispatch.of(task.committed())


@pytest.mark.parametrize("form", ["decoded", "as sent"])
def test_the_span_reads_the_dispatch_in_either_form(form: str) -> None:
    sent = a_dispatch()
    arg = sent if form == "decoded" else sent.to_dict()
    dispatch = _dispatch(arg)
    assert _attributes(dispatch) == {
        "tq.task_id": "t-1",
        "tq.attempt": 1,
        "tq.run": sent.run,
        "tq.priority": "normal",
        "tq.type": "echo",
    }
    # the stored trace context is the parent when the message carries none
    parent = _parent(dispatch, {})
    assert format(trace.get_current_span(parent).get_span_context().trace_id, "032x") == TRACEPARENT[3:35]


def test_a_message_that_is_no_dispatch_gets_a_span_without_attributes() -> None:
    assert _dispatch({"not": "a dispatch"}) is None
    assert _dispatch(None) is None
    assert _attributes(None) == {}
