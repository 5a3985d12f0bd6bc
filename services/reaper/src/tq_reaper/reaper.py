"""The reaper: finds work that fell through the cracks and puts it back on track."""

from __future__ import annotations

import logging

from tqcore.ports import Clock, TaskQueue, TaskStore
from tqcore.service import resend_stuck

log = logging.getLogger(__name__)


class Reaper:
    """Re-sends tasks left ``queued`` with no claim past their deadline (a lost or failed enqueue).

    Several reapers may run at once: every re-send is a conditional commit, so only one wins each task.
    """

    def __init__(self, store: TaskStore, queue: TaskQueue, clock: Clock, *, shards: int) -> None:
        self._store = store
        self._queue = queue
        self._clock = clock
        self._shards = shards

    def run_once(self) -> int:
        """One pass; how many tasks were re-sent."""
        sent = resend_stuck(self._store, self._queue, self._clock, shards=self._shards)
        if sent:
            log.info("re-sent %d queued tasks nobody claimed", sent)
        return sent
