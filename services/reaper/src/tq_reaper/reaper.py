"""The reaper: finds work that fell through the cracks and puts it back on track."""

from __future__ import annotations

import logging

from tqcore.loop import Adapters
from tqcore.recovery import reclaim_expired_leases, resend_stuck, settle_dead_letters

log = logging.getLogger(__name__)


class Reaper:
    """Each pass: reclaims expired leases, re-sends lost enqueues, settles dead-lettered messages.

    Several reapers may run at once: every change is a conditional commit, so only one wins each task.
    """

    def __init__(self, adapters: Adapters, *, shards: int) -> None:
        self._a = adapters
        self._shards = shards

    def run_once(self) -> dict[str, int]:
        """One pass; what it did."""
        a = self._a
        done = {
            "reclaimed": reclaim_expired_leases(a.store, a.queue, a.clock, shards=self._shards),
            "resent": resend_stuck(a.store, a.queue, a.clock, shards=self._shards),
            "poisoned": settle_dead_letters(a.store, a.dead_letters, a.clock),
        }
        if any(done.values()):
            log.info("reaper pass: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
        return done
