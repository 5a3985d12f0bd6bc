"""When the client sends a request again: 429 and 503 honouring ``Retry-After``, broken connections when the
request is safe to repeat; bounded in attempts and in total pause. Pure decisions: the clients do the sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from tq.errors import NetworkError

#: Answered by a gateway (or a load balancer) that did nothing: worth sending again if the request is repeatable.
UNAVAILABLE = frozenset({502, 503, 504})
#: Failures before the request reached the server: always safe to send again.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Retries:
    """The retry budget of one request: at most ``attempts`` sends and ``max_wait_s`` of pauses in all; without a
    ``Retry-After`` the pause starts at ``backoff_s`` and doubles. ``Retries(attempts=1)`` never retries."""

    attempts: int = 5
    max_wait_s: float = 60.0
    backoff_s: float = 0.5


class Retrying:
    """One request's retries: after each answer or failure, the pause before sending again, or ``None``."""

    def __init__(self, policy: Retries, repeatable: bool, now: Callable[[], float] = time.monotonic) -> None:
        self._policy = policy
        self._repeatable = repeatable
        self._now = now
        self._started = now()
        self._sent = 0

    def after_response(self, response: httpx.Response) -> float | None:
        """The pause before sending again (429 always; 502/503/504 if the request is repeatable), or ``None`` to
        take this answer (including an error answer: a retry would wait past the budget)."""
        self._sent += 1
        retry = response.status_code == 429 or (response.status_code in UNAVAILABLE and self._repeatable)
        if not retry:
            return None
        return self._pause(retry_after_s(response.headers.get("Retry-After")))

    def after_error(self, error: httpx.TransportError) -> float:
        """The pause before sending again after a failed send; raises :class:`NetworkError` when the request may
        not be repeated (it may have reached the server) or the budget is spent."""
        self._sent += 1
        pause = self._pause(None) if self._repeatable or isinstance(error, NOT_SENT) else None
        if pause is None:
            raise NetworkError(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__) from error
        return pause

    def again(self) -> float | None:
        """The pause before sending part of a request again (the items of a batch its answer says to), or
        ``None`` once the budget is spent."""
        self._sent += 1
        return self._pause(None)

    def _pause(self, asked_s: float | None) -> float | None:
        if self._sent >= self._policy.attempts:
            return None
        pause = asked_s if asked_s is not None else self._policy.backoff_s * 2 ** (self._sent - 1)
        if self._now() - self._started + pause > self._policy.max_wait_s:
            return None
        return pause


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), ``None`` if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is in GMT; parsedate leaves "-0000" naive
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
