"""Clocks and id generators, injected so tests can fix them."""

from __future__ import annotations

from datetime import UTC, datetime

from ulid import ULID


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        return datetime.now(UTC)


def new_task_id() -> str:
    """A new task id: a lowercase ULID, so ids sort by creation time (newest-first listing uses this)."""
    return str(ULID()).lower()
