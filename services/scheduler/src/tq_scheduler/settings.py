"""Scheduler settings (``TQ_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from tqcore.settings import CoreSettings


class SchedulerSettings(CoreSettings):
    """How often the scheduler looks for due work, how far back after a restart, and how late runs may start."""

    #: Seconds between the scheduler's passes over due work.
    scheduler_interval_s: float = Field(default=1.0, gt=0, le=60)
    #: A brand-new deployment (no shared mark yet) starts its mark this far back (the sweep finds anything older).
    catchup_s: int = Field(default=3600, ge=60)
    #: After downtime a repeating task runs once to catch up if its latest missed slot is at most this old.
    starting_deadline_s: float = Field(default=3600, ge=0)
    #: Runs due this soon are committed ahead and sent at their time (0: commit at the time itself).
    scheduler_stage_s: float = Field(default=5.0, ge=0, le=60)
