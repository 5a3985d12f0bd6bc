"""Tracing helpers: the W3C context in SQS message attributes and in the task, sampling, the console exporter and
the spans that tie a run together. Each test uses a provider of its own (never the process-wide one)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased
from opentelemetry.trace import SpanKind, Tracer

from tqcore import tracing, tracing_sdk
from tqcore.dispatch import Dispatch
from tqcore.domain.codec import task_from_dict, task_to_dict
from tqcore.domain.model import Schedule, Status
from tqcore.domain.task import Task
from tqcore.settings import CoreSettings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def exported() -> Iterator[tuple[Tracer, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(root=tracing_sdk.RootSampler(1.0)), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider.get_tracer("test"), spans
    provider.shutdown()


def task(**fields: object) -> Task:
    return Task(**{"id": "t-1", "type": "echo", "group": "g", "owner": "alice", "created_at": NOW, **fields})  # type: ignore[arg-type]


def by_name(spans: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [s for s in spans.get_finished_spans() if s.name == name]
    return span


def test_the_context_crosses_sqs_message_attributes_and_back(exported: tuple[Tracer, InMemorySpanExporter]) -> None:
    tracer, _ = exported
    with tracer.start_as_current_span("send") as span:
        attributes = tracing.inject_into_message_attributes({"other": {"DataType": "Number", "StringValue": "1"}})
    # The W3C header rides as a String attribute beside the others, well within SQS's ten
    assert attributes["traceparent"]["DataType"] == "String"
    assert attributes["other"] == {"DataType": "Number", "StringValue": "1"}
    assert len(attributes) <= 10
    extracted = trace.get_current_span(tracing.extract_from_message_attributes(attributes)).get_span_context()
    assert (extracted.trace_id, extracted.span_id) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
    )


def test_without_a_span_nothing_is_added_and_nothing_extracted() -> None:
    assert tracing.inject_into_message_attributes({}) == {}
    assert tracing.current_trace_context() is None
    assert tracing.extract_from_message_attributes({"traceparent": {"DataType": "String", "StringValue": "junk"}}) == {}
    assert tracing.context_from(None) == {}


def test_a_stored_context_survives_the_task_codec_and_the_dispatch(
    exported: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, _ = exported
    with tracer.start_as_current_span("request") as span:
        stored = tracing.current_trace_context()
    assert stored is not None
    assert stored["traceparent"].split("-")[1] == f"{span.get_span_context().trace_id:032x}"
    kept = task(trace_context=stored, version=2)
    assert task_from_dict(task_to_dict(kept)).trace_context == stored
    assert Dispatch.from_dict(Dispatch.of(kept).to_dict()).task == kept
    restored = trace.get_current_span(tracing.context_from(stored)).get_span_context()
    assert restored.span_id == span.get_span_context().span_id


def test_root_aws_calls_are_dropped_but_calls_within_a_unit_of_work_are_kept(
    exported: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, spans = exported
    # Given an AWS call outside any unit of work (a long poll), and one within a request
    with tracer.start_as_current_span("SQS.ReceiveMessage", kind=SpanKind.CLIENT):
        pass
    with (
        tracer.start_as_current_span("POST /v1/tasks", kind=SpanKind.SERVER),
        tracer.start_as_current_span("DynamoDB.TransactWriteItems", kind=SpanKind.CLIENT),
    ):
        pass
    # Then only the request and its call are exported
    assert sorted(s.name for s in spans.get_finished_spans()) == ["DynamoDB.TransactWriteItems", "POST /v1/tasks"]


def test_the_console_exporter_writes_one_json_object_per_line() -> None:
    out = io.StringIO()
    provider = tracing_sdk.build_provider("test", CoreSettings(traces_exporter="console"), out=out)
    tracer = provider.get_tracer("test")
    with (
        tracer.start_as_current_span("outer", attributes={"text": "two\nlines"}),
        tracer.start_as_current_span("inner"),
    ):
        pass
    provider.force_flush()
    provider.shutdown()
    lines = out.getvalue().splitlines()
    spans = [json.loads(line) for line in lines]
    assert len(lines) == 2
    assert [s["name"] for s in spans] == ["inner", "outer"]
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {"tq-test"}
    assert spans[0]["parent_id"] == spans[1]["context"]["span_id"]


def test_an_enqueue_continues_the_tasks_trace_and_links_other_current_work(
    exported: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, spans = exported
    with tracer.start_as_current_span("submit"):
        stored = tracing.current_trace_context()
    # When a user's redrive request sends the task again
    with tracer.start_as_current_span("redrive") as redrive:
        tracing.end_span(tracing.start_producer_span("tq.enqueue", task(trace_context=stored), 1, "q", tracer=tracer))
    # Then the enqueue belongs to the task's trace, and links the request
    enqueue, submit = by_name(spans, "tq.enqueue"), by_name(spans, "submit")
    assert enqueue.parent is not None
    assert enqueue.parent.span_id == submit.context.span_id
    assert enqueue.kind is SpanKind.PRODUCER
    assert [link.context.span_id for link in enqueue.links] == [redrive.get_span_context().span_id]
    assert dict(enqueue.attributes or {})["tq.task_id"] == "t-1"


def test_a_retry_is_promoted_in_its_runs_trace_and_keeps_the_promotions_context(
    exported: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, spans = exported
    with tracer.start_as_current_span("submit"):
        stored = tracing.current_trace_context()
    retrying = task(status=Status.RETRYING, attempts=1, next_run_at=NOW, trace_context=stored)
    with tracing.promotion(retrying, NOW + timedelta(seconds=2), tracer=tracer):
        tracing.note_context(retrying)
    promote, submit = by_name(spans, "tq.promote"), by_name(spans, "submit")
    assert promote.parent is not None
    assert promote.parent.span_id == submit.context.span_id
    attributes = dict(promote.attributes or {})
    assert (attributes["tq.attempt"], attributes["tq.run"], attributes["tq.lag_s"]) == (2, 1, 2.0)
    assert retrying.trace_context is not None
    assert retrying.trace_context["traceparent"].split("-")[2] == f"{promote.context.span_id:016x}"


def test_a_later_run_of_a_repeating_task_starts_a_trace_linked_to_the_last(
    exported: tuple[Tracer, InMemorySpanExporter],
) -> None:
    tracer, spans = exported
    with tracer.start_as_current_span("submit"):
        stored = tracing.current_trace_context()
    later = task(
        schedule=Schedule(every_s=60), status=Status.SCHEDULED, run_count=3, next_run_at=NOW, trace_context=stored
    )
    with tracing.promotion(later, NOW, tracer=tracer):
        pass
    promote, submit = by_name(spans, "tq.promote"), by_name(spans, "submit")
    assert promote.parent is None
    assert promote.context.trace_id != submit.context.trace_id
    assert [link.context.span_id for link in promote.links] == [submit.context.span_id]
    assert dict(promote.attributes or {})["tq.run"] == 4


def test_without_an_exporter_no_process_loads_the_sdk() -> None:
    # A fresh interpreter that imports tq's tracing (every service's is this module's) and configures it with the
    # default exporter, none
    code = (
        "import sys; from tqcore import tracing; from tqcore.settings import CoreSettings;"
        "assert tracing.configure_tracing('test', CoreSettings()) is False;"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # Then neither the SDK nor an exporter was imported (they cost each start about a tenth of a second)
    assert done.stdout.strip() == "[]", done.stdout
