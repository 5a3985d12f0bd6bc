"""What ``tq.Client`` raises: the server's problem document, or why the server could not be reached."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """Raised when the API answers an error (``status`` 4xx/5xx, ``problem`` its RFC 9457 document); the
    message is the problem's title and detail."""

    def __init__(self, status: int | None, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        title = problem.get("title") or "Error"
        detail = problem.get("detail")
        head = f"{status} {title}" if status is not None else str(title)
        super().__init__(f"{head}: {detail}" if detail else head)


class NetworkError(ApiError):
    """Raised when the server could not be reached or the connection broke (after the retries the request
    allowed): ``status`` is ``None``, ``problem`` says what happened."""

    def __init__(self, detail: str) -> None:
        super().__init__(None, {"type": "urn:tq:client:network", "title": "Network error", "detail": detail})
