"""Composition root of the reaper: ``tq-reaper``."""

from __future__ import annotations

import os
import socket
import sys

from tq_reaper.reaper import Reaper
from tq_reaper.settings import ReaperSettings
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.clock import SystemClock
from tqcore.logs import configure_logging
from tqcore.loop import run_every
from tqcore.presence import Presence


def main() -> int:
    """Make a pass every ``TQ_REAPER_INTERVAL_S`` until SIGTERM."""
    settings = ReaperSettings()
    configure_logging("reaper")
    ddb = aws.client(settings, "dynamodb")
    reaper = Reaper(
        DynamoTaskStore(ddb, settings),
        SqsTaskQueue(aws.client(settings, "sqs"), settings),
        SystemClock(),
        shards=settings.reap_shards,
    )
    presence = Presence(DynamoRegistry(ddb, settings), "reaper", f"{socket.gethostname()}:{os.getpid()}", interval_s=5)
    presence.start()
    run_every(settings.reaper_interval_s, reaper.run_once)
    presence.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
