"""What a process did lately, tallied in memory and carried by its presence heartbeat.

The overview (``GET /v1/overview``, the console's ``/ui/``) shows throughput and scheduler lag without an AWS call
of its own per task: every commit already passes through :func:`tqcore.metrics.observe_commit`, which tallies the
attempts it finished and the slots it fired here, per minute; the instance's presence heartbeat (one ``PutItem``
per interval, made anyway) carries the last :data:`WINDOW_MINUTES` of it, and the overview sums the live instances'.
An instance that stops takes its counts with it: the overview counts what the *live* instances did.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

N = TypeVar("N", int, float)

#: Minutes of counts a heartbeat carries (the newest is the minute under way).
WINDOW_MINUTES = 15


@dataclass(frozen=True)
class Activity:
    """One instance's recent activity as its heartbeat carried it: per-minute counts, oldest minute first, the last
    of them the Unix minute ``minute`` (``epoch seconds // 60``); a series that is all zero is empty."""

    minute: int
    #: Attempts this instance finished (committed ``succeeded`` / ``failed``; a reaper fails lost attempts).
    succeeded: tuple[int, ...] = ()
    failed: tuple[int, ...] = ()
    #: Runs and retries the scheduler queued on time or late, and the latest of them per minute (seconds after its
    #: slot; ``tq_scheduler_lag_seconds``'s definition).
    fired: tuple[int, ...] = ()
    lag_s: tuple[float, ...] = ()
    #: When the scheduler last finished a pass (Unix seconds): a stuck scheduler fires nothing, so lag alone hides it.
    pass_at: float | None = None
    #: The executor pool the instance serves (executors only).
    pool: str | None = None

    def per_minute(self, series: Sequence[float], minute: int) -> float:
        """The value of ``series`` (one of the fields above) for Unix minute ``minute`` (0 outside the window)."""
        index = len(series) - 1 - (self.minute - minute)
        return series[index] if 0 <= index < len(series) else 0

    def to_json(self) -> str:
        """Compact JSON text (empty series left out) for the registry item."""
        fields: dict[str, Any] = {"minute": self.minute}
        for name in ("succeeded", "failed", "fired", "lag_s"):
            series = getattr(self, name)
            if any(series):
                fields[name] = list(series)
        if self.pass_at is not None:
            fields["pass_at"] = self.pass_at
        if self.pool is not None:
            fields["pool"] = self.pool
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Activity | None:
        """The activity a registry item holds; ``None`` if it is not readable (written by a newer or broken
        writer): the overview then counts the instance as alive and its activity as unknown."""
        try:
            fields = json.loads(text)
            return cls(
                minute=int(fields["minute"]),
                succeeded=_counts(fields.get("succeeded", [])),
                failed=_counts(fields.get("failed", [])),
                fired=_counts(fields.get("fired", [])),
                lag_s=tuple(_finite(v) for v in fields.get("lag_s", [])[-WINDOW_MINUTES:]),
                pass_at=None if fields.get("pass_at") is None else _finite(fields["pass_at"]),
                pool=None if fields.get("pool") is None else str(fields["pool"]),
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None


def _counts(values: Sequence[Any]) -> tuple[int, ...]:
    return tuple(max(0, int(v)) for v in values[-WINDOW_MINUTES:])


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


@dataclass
class _Minute:
    succeeded: int = 0
    failed: int = 0
    fired: int = 0
    lag_s: float = 0.0


@dataclass
class ActivityTally:
    """This process's tally (thread-safe; the clock is injectable for tests). Holds at most a window of minutes."""

    now: Callable[[], float] = time.time
    #: The executor pool this process serves, if it is an executor.
    pool: str | None = None
    _minutes: dict[int, _Minute] = field(default_factory=dict)
    _pass_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def finished(self, outcome: str) -> None:
        """An attempt finished here: ``succeeded`` or ``failed``."""
        with self._lock:
            minute = self._minute()
            if outcome == "succeeded":
                minute.succeeded += 1
            elif outcome == "failed":
                minute.failed += 1

    def fired(self, lag_s: float) -> None:
        """The scheduler queued a run or retry ``lag_s`` seconds after its slot."""
        with self._lock:
            minute = self._minute()
            minute.fired += 1
            minute.lag_s = max(minute.lag_s, max(0.0, lag_s))

    def passed(self) -> None:
        """The scheduler finished a pass."""
        with self._lock:
            self._pass_at = self.now()

    def snapshot(self) -> Activity | None:
        """The window ending with the current minute; ``None`` if there is nothing to say (a gateway, say)."""
        with self._lock:
            current = int(self.now() // 60)
            first = current - WINDOW_MINUTES + 1
            for old in [m for m in self._minutes if m < first]:
                del self._minutes[old]
            if not self._minutes and self._pass_at is None and self.pool is None:
                return None
            window = [self._minutes.get(m, _Minute()) for m in range(first, current + 1)]
            return Activity(
                minute=current,
                succeeded=_series([m.succeeded for m in window]),
                failed=_series([m.failed for m in window]),
                fired=_series([m.fired for m in window]),
                lag_s=_series([round(m.lag_s, 3) for m in window]),
                pass_at=self._pass_at,
                pool=self.pool,
            )

    def _minute(self) -> _Minute:
        return self._minutes.setdefault(int(self.now() // 60), _Minute())


def _series(values: list[N]) -> tuple[N, ...]:
    """A window's values, or ``()`` if all are zero (as the JSON text leaves them out)."""
    return tuple(values) if any(values) else ()


#: This process's tally: fed by ``observe_commit`` (and the scheduler's passes), read by its presence heartbeat.
ACTIVITY = ActivityTally()
