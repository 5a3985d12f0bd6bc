"""The reaper: finds work that fell through the cracks and puts it back on track."""

from __future__ import annotations

import logging
from collections.abc import Callable

from tqcore.pools import pools_in_use
from tqcore.ports import Clock, DeadLetterInbox, Registry, TaskQueue, TaskStore
from tqcore.settings import DEFAULT_POOL
from tqcore.usecases.recovery import reclaim_expired_leases, resend_stuck, settle_dead_letters

log = logging.getLogger(__name__)


class Reaper:
    """Each pass: reclaims expired leases, re-sends lost enqueues, settles dead-lettered messages.

    Several reapers may run at once: every change is a conditional commit, so only one wins each task.
    """

    def __init__(
        self,
        store: TaskStore,
        queue: TaskQueue,
        dead_letters: DeadLetterInbox,
        clock: Clock,
        registry: Registry | None = None,
    ) -> None:
        self._store = store
        self._queue = queue
        self._dead_letters = dead_letters
        self._clock = clock
        #: Whose catalog names the pools whose dead-letter queues are read (``None``: the default pool's only).
        self._registry = registry

    def run_once(self) -> dict[str, int]:
        """One pass; what it did. Each job runs even if another fails (it is logged and tried next pass)."""
        store, queue, clock = self._store, self._queue, self._clock
        jobs: dict[str, Callable[[], int]] = {
            "reclaimed": lambda: reclaim_expired_leases(store, queue, clock),
            "resent": lambda: resend_stuck(store, queue, clock),
            "dead letters settled": lambda: settle_dead_letters(
                store, queue, self._dead_letters, clock, pools=self._pools()
            ),
        }
        done = {}
        for name, job in jobs.items():
            try:
                done[name] = job()
            except Exception:
                log.exception("reaper job %r failed; it runs again next pass", name)
                done[name] = 0
        if any(done.values()):
            log.info("reaper pass: %s", ", ".join(f"{k} {v}" for k, v in done.items()))
        return done

    def _pools(self) -> list[str]:
        return [DEFAULT_POOL] if self._registry is None else pools_in_use(self._registry)
