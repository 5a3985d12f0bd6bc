"""One line for any error a command can meet: the API's problem document, a network failure, or a bug."""

from __future__ import annotations

from typing import Any

from tq.errors import ApiError


def describe(error: Exception) -> str:
    """The line ``tq`` prints for ``error`` (after ``tq: ``)."""
    if isinstance(error, ApiError):
        return _api(error)
    return f"unexpected error: {type(error).__name__}: {error}".rstrip(": ")


def _api(error: ApiError) -> str:
    if error.status is None:  # no answer from the gateway
        return f"cannot reach the gateway: {error}"
    problem: dict[str, Any] = error.problem or {}
    title = problem.get("title") or "error"
    detail = problem.get("detail")
    line = f"{error.status} {title}" + (f": {detail}" if detail and detail != title else "")
    fields = [_field(item) for item in problem.get("errors") or [] if isinstance(item, dict)]
    return line + (f" ({'; '.join(fields)})" if fields else "")


def _field(item: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in item.get("loc") or [])
    return f"{loc}: {item.get('msg')}" if loc else str(item.get("msg"))
