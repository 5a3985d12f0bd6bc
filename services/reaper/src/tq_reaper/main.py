"""Entry point of the reaper: ``tq-reaper``."""

from __future__ import annotations

import sys

from tq_reaper.app import create_service
from tq_reaper.settings import ReaperSettings
from tqcore.loop import run_periodic_service
from tqcore.settings import load_settings


def main() -> int:
    """Make a pass every ``TQ_REAPER_INTERVAL_S`` until SIGTERM."""
    settings = load_settings(ReaperSettings, "tq-reaper")
    return run_periodic_service(create_service(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
