"""Scheduler settings (``TQ_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from tqcore.settings import CoreSettings


class SchedulerSettings(CoreSettings):
    """How often the scheduler looks for due work, and how far back it looks after a restart."""

    scheduler_interval_s: float = Field(default=1.0, gt=0)
    #: On start, due work this old is still found (the starting deadline for catch-up).
    catchup_s: int = Field(default=3600, ge=60)
