"""Reaper settings (``TQ_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from tqcore.settings import CoreSettings


class ReaperSettings(CoreSettings):
    """How often the reaper makes a pass."""

    reaper_interval_s: float = Field(default=5.0, gt=0)
