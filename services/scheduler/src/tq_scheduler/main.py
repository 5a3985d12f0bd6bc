"""Composition root of the scheduler: ``tq-scheduler``."""

from __future__ import annotations

import sys

from tq_scheduler.scheduler import Scheduler
from tq_scheduler.settings import SchedulerSettings
from tqcore.loop import run_periodic_service


def main() -> int:
    """Promote due work every ``TQ_SCHEDULER_INTERVAL_S`` until SIGTERM."""
    settings = SchedulerSettings()
    return run_periodic_service(
        "scheduler",
        settings,
        settings.scheduler_interval_s,
        lambda a: (
            Scheduler(
                a.store, a.queue, a.registry, a.clock, shards=settings.due_shards, catchup_s=settings.catchup_s
            ).run_once
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
