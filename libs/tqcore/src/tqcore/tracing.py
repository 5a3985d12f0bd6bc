"""Traces: each service's OpenTelemetry set-up, and the spans and W3C context that make one trace per run.

A run's trace starts at the gateway's request span (for a repeating task's later runs: at the scheduler's
``tq.promote``) and holds the DynamoDB and SQS client spans, the ``tq.enqueue`` producer span, the scheduler's
``tq.promote`` and the executor's ``tq.attempt``. The context crosses SQS in each message's ``traceparent`` and
``tracestate`` attributes, and waits in the task itself (``Task.trace_context``, a W3C carrier) while the run
is scheduled or retrying. The domain never imports OpenTelemetry: it only stores that carrier.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import Token
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tqcore.domain.model import Overlap, Status
from tqcore.domain.task import BUSY, Task
from tqcore.settings import CoreSettings

TRACER = trace.get_tracer("tq")
_W3C = TraceContextTextMapPropagator()
#: The SQS message attributes that carry the context (the executor asks for them on receive).
MESSAGE_ATTRIBUTE_NAMES = sorted(_W3C.fields)


# ------------------------------------------------------------------------------------------------ set-up
def configure_tracing(service: str, settings: CoreSettings) -> bool:
    """Install the tracing SDK for ``tq-<service>`` and trace every AWS call, as the settings say.

    With the ``none`` exporter nothing is installed (``False``): spans are then the API's no-ops. The provider
    exports what is still queued when the process exits (an ``atexit`` hook), so call this once per process,
    after any fork.
    """
    if settings.traces_exporter == "none":
        return False
    # Imported here: the SDK, the exporters and the botocore instrumentation cost every process about a tenth
    # of a second of CPU to import, paid at each start (a chaos run restarts executors over a hundred times).
    from tqcore import tracing_sdk

    tracing_sdk.install(service, settings)
    return True


# --------------------------------------------------------------------------------------- W3C context
def current_trace_context() -> dict[str, str] | None:
    """The current span's W3C carrier (``traceparent``, maybe ``tracestate``) to store with a task; ``None``
    outside any span."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier)
    return carrier or None


def context_from(carrier: Mapping[str, str] | None) -> Context:
    """The context a stored W3C carrier names; an empty context (a new trace) for ``None`` or garbage."""
    return _W3C.extract(dict(carrier or {}), context=Context())


def inject_into_message_attributes(attributes: Mapping[str, Any], context: Context | None = None) -> dict[str, Any]:
    """``attributes`` (SQS ``MessageAttributes``) plus the W3C context of ``context`` (default: the current one)
    as ``String`` attributes; unchanged when there is no span."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    return {**attributes, **{name: {"DataType": "String", "StringValue": value} for name, value in carrier.items()}}


def extract_from_message_attributes(attributes: Mapping[str, Any]) -> Context:
    """The context carried by a received message's ``MessageAttributes`` (empty if it carries none)."""
    carrier = {
        name: value["StringValue"]
        for name, value in attributes.items()
        if name in _W3C.fields and isinstance(value, Mapping) and isinstance(value.get("StringValue"), str)
    }
    return _W3C.extract(carrier, context=Context())


# ----------------------------------------------------------------------------------------------- spans
def task_attributes(task: Task, attempt: int) -> dict[str, Any]:
    """The ``tq.*`` attributes of a span about one attempt of a task."""
    return {
        "tq.task_id": task.id,
        "tq.attempt": attempt,
        "tq.run": task.run_no,
        "tq.type": task.type,
        "tq.priority": task.priority.value,
    }


def start_producer_span(name: str, task: Task, attempt: int, queue: str, *, tracer: Tracer = TRACER) -> Span:
    """A ``PRODUCER`` span for sending ``attempt`` of ``task`` to ``queue`` (not made current).

    Its parent is the task's stored context (the request or promotion that queued this run) or, if it has none,
    the current span; a current span of other work (a user's redrive) is linked instead.
    """
    parent = context_from(task.trace_context) if task.trace_context else None
    current = trace.get_current_span().get_span_context()
    stored = trace.get_current_span(parent).get_span_context() if parent is not None else current
    links = [Link(current)] if current.is_valid and current.span_id != stored.span_id else []
    attributes = {**task_attributes(task, attempt), "messaging.system": "aws_sqs", "messaging.destination.name": queue}
    return tracer.start_span(name, context=parent, kind=SpanKind.PRODUCER, links=links, attributes=attributes)


def end_span(span: Span, error: str | None = None) -> None:
    """End a span, marked failed with ``error`` if given."""
    if error is not None:
        span.set_status(StatusCode.ERROR, error)
    span.end()


@contextmanager
def promotion(task: Task, now: datetime, *, tracer: Tracer = TRACER) -> Iterator[Span]:
    """The current span ``tq.promote`` while the scheduler acts on a due task.

    It continues the task's stored context, except when it starts a new run of a repeating task: each run gets
    a trace of its own (a new root, linked to the context it came from), so a task repeating every minute is
    not one endless trace. The change commits with the span's context (:func:`note_context`), so the send and
    the attempt that follow are its children, and later retries of the run stay in its trace.
    """
    stored = context_from(task.trace_context)
    links: list[Link] = []
    parent = stored
    if _starts_run(task):
        previous = trace.get_current_span(stored).get_span_context()
        links = [Link(previous)] if previous.is_valid else []
        parent = Context()
    attributes = task_attributes(task, task.attempts + 1)
    if task.wake_at is not None:
        attributes["tq.lag_s"] = (now - task.wake_at).total_seconds()
    with tracer.start_as_current_span("tq.promote", context=parent, links=links, attributes=attributes) as span:
        yield span


def _starts_run(task: Task) -> bool:
    """Whether acting on this due task starts a new run of a repeating task: a later slot's run, or a run spawned
    beside the current one (``overlap: allow``). A first run, a retry or a one-shot task continues its trace."""
    if not task.is_repeating:
        return False
    later_slot = task.status is Status.SCHEDULED and task.run_count > 0
    return later_slot or (task.overlap is Overlap.ALLOW and task.status in BUSY)


def note_context(task: Task) -> None:
    """Keep the current span's context in ``task`` (stored with its next commit); nothing outside a span."""
    task.trace_context = current_trace_context() or task.trace_context


@dataclass
class Activation:
    """A span made current by :func:`activate`; :meth:`end` ends it and restores the previous context."""

    span: Span
    token: Token[Context]

    def end(self, error: BaseException | str | None = None) -> None:
        """End the span (failed if there is an ``error``: an exception, or what went wrong) and detach it."""
        if isinstance(error, BaseException):
            self.span.record_exception(error)
            self.span.set_status(StatusCode.ERROR, f"{type(error).__name__}: {error}")
        elif error is not None:
            self.span.set_status(StatusCode.ERROR, error)
        self.span.end()
        otel_context.detach(self.token)


def activate(name: str, parent: Context, kind: SpanKind, attributes: Mapping[str, Any]) -> Activation:
    """Start ``name`` as a child of ``parent`` (empty: a new trace) and make it the current span until
    :meth:`Activation.end`, which must run on the same thread."""
    span = TRACER.start_span(name, context=parent, kind=kind, attributes=attributes)
    return Activation(span, otel_context.attach(trace.set_span_in_context(span)))


def note_outcome(outcome: str, *, failed: bool = False) -> None:
    """Record an attempt's outcome on the current span (``tq.outcome``); a failed attempt fails the span."""
    span = trace.get_current_span()
    span.set_attribute("tq.outcome", outcome)
    if failed:
        span.set_status(StatusCode.ERROR, outcome)
