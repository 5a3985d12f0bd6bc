"""Request bodies: a size limit (413) and strict JSON parsing (400), as middleware and one helper."""

from __future__ import annotations

import json
from typing import Any

import falcon


class BodyLimit:
    """Reads at most ``max_bytes`` of a request body; more is answered 413 before anything is parsed."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.method not in ("POST", "PUT", "PATCH"):
            return
        too_large = falcon.HTTPContentTooLarge(
            title="Content Too Large", description=f"the body exceeds {self._max_bytes} bytes"
        )
        if req.content_length is not None and req.content_length > self._max_bytes:
            raise too_large
        if req.content_length is None and req.env.get("wsgi.input_terminated"):
            # Chunked upload: no declared length, but the server (gunicorn) ends the stream at the body's end.
            body = req.stream.read(self._max_bytes + 1)
        else:
            body = req.bounded_stream.read(self._max_bytes + 1)
        if len(body) > self._max_bytes:
            raise too_large
        req.context.body = body


def json_object(req: falcon.Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    raw = getattr(req.context, "body", b"")
    if not raw.strip():
        raise falcon.HTTPBadRequest(title="Bad Request", description="the request body is empty; send a JSON object")
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise falcon.HTTPBadRequest(title="Bad Request", description=f"the body is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise falcon.HTTPBadRequest(title="Bad Request", description="the body must be a JSON object")
    return value
