"""Composition root of the reaper: ``tq-reaper``."""

from __future__ import annotations

import sys

from tq_reaper.gauges import SystemGauges
from tq_reaper.reaper import Reaper
from tq_reaper.settings import ReaperSettings
from tqcore.loop import run_periodic_service
from tqcore.settings import load_settings


def main() -> int:
    """Make a pass every ``TQ_REAPER_INTERVAL_S`` until SIGTERM."""
    settings = load_settings(ReaperSettings, "tq-reaper")
    return run_periodic_service(
        "reaper",
        settings,
        settings.reaper_interval_s,
        lambda adapters: Reaper(adapters).run_once,
        lambda a: [SystemGauges(a.queue, a.queries, a.registry, a.clock, ttl_s=settings.gauges_ttl_s)],
    )


if __name__ == "__main__":
    sys.exit(main())
