"""Each message's attempt is a ``tq.attempt`` span in the trace of the enqueue that sent it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Mapping
from typing import Any

import dramatiq
from dramatiq.broker import Broker, MessageProxy
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from tqcore import tracing
from tqcore.dispatch import Dispatch


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
        dispatch = _dispatch(message.args[0] if message.args else None)
        received = getattr(message, "_sqs_message", None)
        parent = _parent(dispatch, getattr(received, "message_attributes", None) or {})
        self._local.attempt = tracing.activate("tq.attempt", parent, SpanKind.CONSUMER, _attributes(dispatch))

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


def _dispatch(arg: Any) -> Dispatch | None:
    """The message's dispatch: decoded by the consumer, or as sent (a dict); ``None`` if it is neither."""
    if isinstance(arg, Dispatch):
        return arg
    if isinstance(arg, Mapping):
        with contextlib.suppress(Exception):  # the actor refuses it itself; the span only lacks attributes
            return Dispatch.from_dict(dict(arg))
    return None


def _parent(dispatch: Dispatch | None, message_attributes: Mapping[str, Any]) -> Context:
    """The message's context, else the one stored with the task (a sender that did not trace)."""
    carried = tracing.extract_from_message_attributes(message_attributes)
    if carried:
        return carried
    task = dispatch.task if dispatch is not None else None
    return tracing.context_from(task.trace_context if task is not None else None)


def _attributes(dispatch: Dispatch | None) -> dict[str, Any]:
    """``tq.*`` attributes from the dispatch."""
    if dispatch is None:
        return {}
    found = {
        "tq.task_id": dispatch.task_id,
        "tq.attempt": dispatch.attempt,
        "tq.run": dispatch.run,
        "tq.priority": dispatch.priority.value,
        "tq.type": dispatch.task.type if dispatch.task is not None else None,
    }
    return {name: value for name, value in found.items() if value is not None}
