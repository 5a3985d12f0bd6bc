"""Composition root of the scheduler: ``tq-scheduler``."""

from __future__ import annotations

import os
import socket
import sys

from tq_scheduler.scheduler import Scheduler
from tq_scheduler.settings import SchedulerSettings
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import SystemClock
from tqcore.logs import configure_logging
from tqcore.loop import run_every
from tqcore.presence import Presence


def main() -> int:
    """Promote due work every ``TQ_SCHEDULER_INTERVAL_S`` until SIGTERM."""
    settings = SchedulerSettings()
    configure_logging("scheduler")
    ddb = aws.client(settings, "dynamodb")
    scheduler = Scheduler(
        DynamoTaskStore(ddb, settings),
        SqsTaskQueue(aws.client(settings, "sqs"), settings),
        SystemClock(),
        shards=settings.due_shards,
        catchup_s=settings.catchup_s,
    )
    presence = Presence(
        DynamoRegistry(ddb, settings), "scheduler", f"{socket.gethostname()}:{os.getpid()}", interval_s=5
    )
    presence.start()
    run_every(settings.scheduler_interval_s, scheduler.run_once)
    presence.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
