"""Request spans: each API request is a ``SERVER`` span named after its route (``POST /v1/tasks``).

A middleware of our own rather than opentelemetry-instrumentation-falcon, whose response step fails on
Falcon 4's integer statuses (``resp.status = 201``) and turns every such response into a 500.
"""

from __future__ import annotations

from typing import Any

import falcon
from opentelemetry.trace import SpanKind

from tqcore import tracing

#: Probes and scrapes, polled every few seconds, would each be a trace of their own.
UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestSpans:
    """Falcon middleware, first in the chain so its span covers the others (authentication, rate limiting) and
    every AWS call a request makes. A caller's W3C ``traceparent`` header is continued."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Start the request's span and make it current for this thread."""
        if req.path in UNTRACED_PATHS:
            return
        carrier = {name: value for name in ("traceparent", "tracestate") if (value := req.get_header(name))}
        attributes = {"http.request.method": req.method, "url.path": req.path, "url.scheme": req.scheme}
        req.context.tq_span = tracing.activate(req.method, tracing.context_from(carrier), SpanKind.SERVER, attributes)

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        """Name the span after the route, record the status (a 5xx fails it) and end it."""
        activation: tracing.Activation | None = req.context.get("tq_span")
        if activation is None:
            return
        code = falcon.http_status_to_code(resp.status)
        activation.span.update_name(f"{req.method} {req.uri_template}" if req.uri_template else req.method)
        activation.span.set_attribute("http.response.status_code", code)
        if req.uri_template:
            activation.span.set_attribute("http.route", req.uri_template)
        activation.end(f"HTTP {code}" if code >= 500 else None)
