"""A tiny OTLP/HTTP trace receiver on loopback, for tests: it keeps every span services export to it."""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as SpanProto


@dataclass(frozen=True)
class Span:
    """One received span; ids in lowercase hex, ``parent_span_id`` ``None`` for a root."""

    name: str
    kind: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    attributes: dict[str, Any]
    service: str
    #: ``(trace id, span id)`` of each linked span.
    links: tuple[tuple[str, str], ...] = ()


class OtlpReceiver:
    """``with OtlpReceiver() as receiver``: serves ``POST /v1/traces`` (OTLP protobuf) at ``receiver.url``."""

    def __init__(self) -> None:
        self._spans: list[Span] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True)

    @property
    def url(self) -> str:
        """The base URL to export to (``TQ_OTLP_ENDPOINT``); spans are posted to ``<url>/v1/traces``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def spans(self) -> list[Span]:
        """Every span received so far, in arrival order."""
        with self._lock:
            return list(self._spans)

    def receive(self, request: ExportTraceServiceRequest) -> None:
        """Keep the spans of one export request."""
        found: list[Span] = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                found += [_span(span, str(resource.get("service.name", ""))) for span in scope_spans.spans]
        with self._lock:
            self._spans += found

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/v1/traces":
                self.send_error(404)
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if not self.headers.get("Content-Type", "").startswith("application/x-protobuf"):
                # OTLP/JSON spells ids in hex where protobuf's JSON mapping expects base64: not worth a parser here.
                self.send_error(415, "only application/x-protobuf")
                return
            receiver.receive(ExportTraceServiceRequest.FromString(body))
            reply = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read their own output
            pass

    return Handler


def _span(span: SpanProto, service: str) -> Span:
    return Span(
        name=span.name,
        kind=SpanProto.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() or None,
        attributes=_attributes(span.attributes),
        service=service,
        links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
    )


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return getattr(value, kind)
