"""The RFC 9457 problem+json documents every error is answered with (``errors`` decides which error is which).

Small on purpose: gunicorn's master imports it (for the requests gunicorn refuses itself) before it forks.
"""

from __future__ import annotations

import json
from typing import Any

import falcon

PROBLEM_JSON = "application/problem+json"


def title(status: int) -> str:
    """The status's reason phrase (``404`` -> ``Not Found``)."""
    return str(falcon.code_to_http_status(status)).split(" ", 1)[1]


def slug(status: int) -> str:
    """A problem type slug from the status's phrase (``414`` -> ``uri-too-long``)."""
    return title(status).lower().replace(" ", "-").replace("'", "")


def body(status: int, kind: str, detail: str, /, *, title_: str | None = None, **extra: Any) -> dict[str, Any]:
    """The problem document: ``type`` ``urn:tq:problem:<kind>``, ``title``, ``status``, ``detail`` and ``extra``."""
    return {
        "type": f"urn:tq:problem:{kind}",
        "title": title_ or title(status),
        "status": status,
        "detail": detail,
        **extra,
    }


def document(status: int, kind: str, detail: str, /, *, title_: str | None = None, **extra: Any) -> str:
    """The problem+json text of :func:`body`."""
    return json.dumps(body(status, kind, detail, title_=title_, **extra))


def refusal(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 response for a request refused before it reached the app (a request line or headers
    over gunicorn's limits, malformed HTTP): problem+json like every other error, and the connection closed."""
    body = document(status, slug(status), detail).encode()
    head = (
        f"HTTP/1.1 {status} {title(status)}\r\nConnection: close\r\n"
        f"Content-Type: {PROBLEM_JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body
