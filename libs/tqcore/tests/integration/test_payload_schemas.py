"""The gateway's payload-schema check never fetches what a published schema refers to (a real HTTP server
stands where a ``$ref`` points)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tqcore.domain.errors import InvalidPayload
from tqcore.payload_schemas import PayloadSchemas

pytestmark = pytest.mark.integration


@pytest.fixture
def schema_server() -> Iterator[tuple[str, list[str]]]:
    """A server on 127.0.0.1 that would serve any schema asked for, recording each request."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            body = b'{"type": "integer"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/schema+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def test_a_schema_referring_to_a_url_is_not_fetched(schema_server: tuple[str, list[str]]) -> None:
    url, asked = schema_server
    schemas = PayloadSchemas()
    remote = {"type": "object", "properties": {"n": {"$ref": f"{url}/n.json"}}}
    schemas.check("t", remote, {"n": "not an integer"})  # the schema does not compile offline: not checked here
    assert asked == []


def test_references_within_the_schema_still_work() -> None:
    local = {"type": "object", "properties": {"n": {"$ref": "#/$defs/N"}}, "$defs": {"N": {"type": "integer"}}}
    schemas = PayloadSchemas()
    schemas.check("t", local, {"n": 1})
    with pytest.raises(InvalidPayload) as refused:
        schemas.check("t", local, {"n": "x"})
    assert refused.value.errors[0]["loc"] == ["payload", "n"]
