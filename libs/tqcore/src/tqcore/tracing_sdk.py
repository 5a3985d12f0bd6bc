"""The OpenTelemetry SDK's side of tracing: the provider, its exporter and sampler, and botocore's instrumentation.

Imported only by :func:`tqcore.tracing.configure_tracing` when an exporter is configured: with ``none`` (the
default) a process never loads the SDK and its spans are the API's no-ops.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence
from typing import IO

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from tqcore.settings import CoreSettings


def install(service: str, settings: CoreSettings) -> None:
    """Make the configured provider the global one, and trace every AWS call."""
    trace.set_tracer_provider(build_provider(service, settings))
    BotocoreInstrumentor().instrument()  # type: ignore[no-untyped-call]


def build_provider(service: str, settings: CoreSettings, out: IO[str] | None = None) -> TracerProvider:
    """A tracer provider for ``tq-<service>`` exporting in batches (``OTEL_BSP_SCHEDULE_DELAY`` sets how often)
    to the configured exporter; ``out`` replaces stdout for the console exporter."""
    resource = Resource.create(
        {"service.name": f"tq-{service}", "service.instance.id": f"{socket.gethostname()}:{os.getpid()}"}
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=RootSampler(settings.traces_sample_ratio)))
    provider.add_span_processor(BatchSpanProcessor(_exporter(settings, out)))
    return provider


def _exporter(settings: CoreSettings, out: IO[str] | None) -> SpanExporter:
    if settings.traces_exporter == "console":
        # One JSON object per line: everything a service writes must parse as JSON lines.
        return ConsoleSpanExporter(out=out or sys.stdout, formatter=_json_line)
    if settings.otlp_endpoint:
        return OTLPSpanExporter(endpoint=f"{settings.otlp_endpoint.rstrip('/')}/v1/traces")
    return OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT or the default


def _json_line(span: ReadableSpan) -> str:
    return f"{span.to_json(indent=None)}\n"


class RootSampler(Sampler):
    """Decides for spans that start a trace: a ``ratio`` share of them, by trace id, except AWS calls.

    An AWS call outside any unit of work (long polls, heartbeats, presence, the scheduler's index queries) would be
    a trace of one span, several a second per process: it is dropped. Calls made within a request, a promotion or
    an attempt have a parent, and follow that trace's decision (``ParentBased``).
    """

    def __init__(self, ratio: float) -> None:
        self._ratio = TraceIdRatioBased(ratio)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Drop a root client span; sample any other root by the ratio."""
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        """Named in the provider's description."""
        return f"TqRootSampler{{{self._ratio.get_description()}}}"
