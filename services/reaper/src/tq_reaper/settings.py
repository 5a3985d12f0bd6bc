"""Reaper settings (``TQ_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from tqcore.settings import CoreSettings


class ReaperSettings(CoreSettings):
    """How often the reaper makes a pass, and reads the system gauges."""

    #: Seconds between the reaper's passes (lost enqueues, expired leases, overdue work).
    reaper_interval_s: float = Field(default=5.0, gt=0)
    #: A scrape of ``/metrics`` reads the system gauges from AWS at most this often (a few calls each time).
    gauges_ttl_s: float = Field(default=10.0, ge=0)
