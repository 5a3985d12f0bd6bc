"""Entry point of the scheduler: ``tq-scheduler``."""

from __future__ import annotations

import sys

from tq_scheduler.app import create_service
from tq_scheduler.settings import SchedulerSettings
from tqcore.loop import run_periodic_service
from tqcore.settings import load_settings


def main() -> int:
    """Act on due work every ``TQ_SCHEDULER_INTERVAL_S`` (or sooner, when it knows something is due) until SIGTERM."""
    settings = load_settings(SchedulerSettings, "tq-scheduler")
    return run_periodic_service(create_service(settings), settings)


if __name__ == "__main__":
    sys.exit(main())
