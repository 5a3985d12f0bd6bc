"""Each message's attempt is a ``tq.attempt`` span in the trace of the enqueue that sent it."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import dramatiq
from dramatiq.broker import Broker, MessageProxy
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from tqcore import tracing


class Tracing(dramatiq.Middleware):
    """A ``CONSUMER`` span ``tq.attempt`` is current while the actor runs, so the claim, the outcome and the run
    log's AWS calls are its children.

    Its parent comes from the message's ``traceparent`` attribute (the ``tq.enqueue`` span), or else from the
    trace context stored with the task in the dispatch's snapshot. Hooks run on the worker thread that processes
    the message, so the span is kept per thread.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def before_process_message(self, broker: Broker, message: MessageProxy) -> None:
        raw: Mapping[str, Any] = message.args[0] if message.args and isinstance(message.args[0], Mapping) else {}
        received = getattr(message, "_sqs_message", None)
        parent = _parent(raw, getattr(received, "message_attributes", None) or {})
        self._local.attempt = tracing.activate("tq.attempt", parent, SpanKind.CONSUMER, _attributes(raw))

    def after_process_message(
        self, broker: Broker, message: MessageProxy, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._end(exception)

    def after_skip_message(self, broker: Broker, message: MessageProxy) -> None:
        self._end(None)

    def _end(self, exception: BaseException | None) -> None:
        attempt: tracing.Activation | None = getattr(self._local, "attempt", None)
        if attempt is not None:  # an earlier middleware may have skipped the message before ours began
            self._local.attempt = None
            attempt.end(exception)


def _parent(raw: Mapping[str, Any], message_attributes: Mapping[str, Any]) -> Context:
    """The message's context, else the one stored with the task (a sender that did not trace)."""
    carried = tracing.extract_from_message_attributes(message_attributes)
    if carried:
        return carried
    snapshot = raw.get("task") or {}
    return tracing.context_from(snapshot.get("trace_context"))


def _attributes(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``tq.*`` attributes from the dispatch as sent (the actor decodes it again; this only reads five fields)."""
    snapshot = raw.get("task") or {}
    found = {
        "tq.task_id": raw.get("task_id"),
        "tq.attempt": raw.get("attempt"),
        "tq.run": raw.get("run"),
        "tq.priority": raw.get("priority"),
        "tq.type": snapshot.get("type"),
    }
    return {name: value for name, value in found.items() if value is not None}
