"""Request bodies: a size limit (413) and strict JSON parsing (400), as middleware and one helper."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import falcon


class BodyLimit:
    """Reads at most ``max_bytes`` of a request body (``per_path`` names other limits for some paths); more is
    answered 413 before anything is parsed."""

    def __init__(self, max_bytes: int, per_path: Mapping[str, int] | None = None) -> None:
        self._max_bytes = max_bytes
        self._per_path = dict(per_path or {})

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.method not in ("POST", "PUT", "PATCH"):
            return
        limit = self._per_path.get(req.path, self._max_bytes)
        too_large = falcon.HTTPContentTooLarge(title="Content Too Large", description=f"the body exceeds {limit} bytes")
        if req.content_length is not None and req.content_length > limit:
            raise too_large
        if req.content_length is None and req.env.get("wsgi.input_terminated"):
            # Chunked upload: no declared length, but the server (gunicorn) ends the stream at the body's end.
            body = req.stream.read(limit + 1)
        else:
            body = req.bounded_stream.read(limit + 1)
        if len(body) > limit:
            raise too_large
        req.context.body = body


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _bad(detail: str) -> falcon.HTTPBadRequest:
    return falcon.HTTPBadRequest(title="Bad Request", description=detail)


def json_object(req: falcon.Request) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it.

    Strict JSON only: ``NaN``/``Infinity`` and lone UTF-16 surrogates are refused here, so everything stored
    can be served back as valid JSON and written to DynamoDB as valid UTF-8.
    """
    raw = getattr(req.context, "body", b"")
    if not raw.strip():
        raise _bad("the request body is empty; send a JSON object")
    try:
        value = json.loads(raw, parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as error:
        raise _bad(f"the body is not valid JSON: {error}") from None
    except RecursionError:
        raise _bad("the body is nested too deeply") from None
    if not isinstance(value, dict):
        raise _bad("the body must be a JSON object")
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode()
    except UnicodeEncodeError:
        raise _bad("the body contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not valid text") from None
    except ValueError as error:  # a number too large for a float, e.g. 1e999 parsed as inf
        raise _bad(f"the body is not valid JSON: {error}") from None
    return value


def query_params(req: falcon.Request, *names: str) -> dict[str, Any]:
    """The named query parameters that were given (others are ignored, as for any careful HTTP API)."""
    return {name: req.params[name] for name in names if name in req.params}
