"""Composition root of the scheduler: ``tq-scheduler``."""

from __future__ import annotations

import sys

from tq_scheduler.scheduler import Scheduler
from tq_scheduler.settings import SchedulerSettings
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.backfill import SweepKeysBackfill
from tqcore.loop import Adapters, instance_name, run_periodic_service
from tqcore.settings import load_settings


def main() -> int:
    """Act on due work every ``TQ_SCHEDULER_INTERVAL_S`` (or sooner, when it knows something is due) until SIGTERM."""
    settings = load_settings(SchedulerSettings, "tq-scheduler")

    def make_pass(a: Adapters) -> Scheduler:
        return Scheduler(
            a.store,
            a.queue,
            a.registry,
            a.clock,
            parts=settings.due_shards,  # one read per shard of the due index, in parallel
            catchup_s=settings.catchup_s,
            starting_deadline_s=settings.starting_deadline_s,
            interval_s=settings.scheduler_interval_s,
            stage_s=settings.scheduler_stage_s,
            instance=instance_name(),
            backfill=SweepKeysBackfill(aws.client(settings, "dynamodb"), settings).step,
        )

    return run_periodic_service("scheduler", settings, settings.scheduler_interval_s, make_pass)


if __name__ == "__main__":
    sys.exit(main())
