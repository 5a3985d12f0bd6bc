"""The scheduler: each pass acts on the tasks due since its mark (what it has not yet drained), and once a
minute on every overdue task however old (the sweep)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from prometheus_client import Gauge

from tqcore.activity import ACTIVITY, ActivityTally
from tqcore.ports import Clock, Registry, TaskQueue, TaskStore
from tqcore.usecases.scheduling import Pass, Promoter

log = logging.getLogger(__name__)

LAST_PASS = Gauge(
    "tq_scheduler_last_pass_timestamp_seconds", "When this scheduler last finished a pass over every due task."
)

#: The shared mark: every task due before it has been acted on by some scheduler replica.
MARK = "scheduler-drained-until"
#: A pass reads what is due from the mark, but never further back than this: what lies further back (a
#: task that kept failing holds the mark, a long outage) is found by the sweep, whose cost does not grow with age.
WALK_BACK = timedelta(minutes=15)
#: Every so often a pass also sweeps: a read of every due task that is not queued,
#: however old (a task left behind, an index that lagged, a clock that was behind).
SWEEP_EVERY_S = 60.0
#: How often a replica looks up the live replicas, to divide the due work among them.
DIVIDE_EVERY_S = 30.0


class Scheduler:
    """Promotes due tasks. Holds its dependencies and the low-water mark of what is drained.

    The mark lives in the table, so a scheduler that was down for a day resumes where it left off, and
    replicas share it; it never moves past a due task whose change failed. ``catchup_s`` only places the mark
    of a brand-new deployment, which has none yet. Anything due before what a pass reads is the sweep's.
    ``starting_deadline_s`` is how late a repeating task's catch-up run may still start; ``interval_s`` is
    the pause between passes, and how far ahead a pass looks so that the next one can start exactly when the
    earliest task it saw falls due. Runs due within ``stage_s`` are committed ahead and sent at their time
    (see ``tqcore.usecases.scheduling``). ``backfill`` is stepped once per pass, before the pass, until it returns
    ``True`` (the index keys of tasks written before their index existed: ``tqcore.adapters.dynamodb.backfill``).
    """

    def __init__(
        self,
        store: TaskStore,
        queue: TaskQueue,
        registry: Registry,
        clock: Clock,
        *,
        parts: int = 4,
        catchup_s: int,
        starting_deadline_s: float = 3600,
        interval_s: float = 1.0,
        stage_s: float = 0.0,
        instance: str | None = None,
        backfill: Callable[[], bool] | None = None,
        activity: ActivityTally = ACTIVITY,
    ) -> None:
        self._activity = activity
        #: A one-off data backfill still under way (a step per pass until it says it is done), or ``None``.
        self._backfill = backfill
        self._registry = registry
        self._instance = instance
        self._divided_at: datetime | None = None
        self._clock = clock
        self._catchup_s = catchup_s
        self._interval_s = interval_s
        self._promoter = Promoter(
            store,
            queue,
            clock,
            parts=parts,
            starting_deadline_s=starting_deadline_s,
            lookahead_s=interval_s,
            stage_s=stage_s,
        )
        self._low_water: datetime | None = None
        self._swept_at: datetime | None = None
        #: Due tasks a pass could not change (id -> wake_at), kept until a sweep finds them handled: the mark
        #: never moves past one.
        self._held: dict[str, datetime] = {}
        self.last_pass = Pass()

    def run_once(self) -> int:
        """One pass over everything due from the low-water mark to now (and, once a minute, a sweep of every
        overdue task before that); how many runs and retries were queued."""
        now = self._clock.now()
        self._divide(now)
        self._step_backfill()
        if self._low_water is None:
            self._low_water = self._registry.mark(MARK) or now - timedelta(seconds=self._catchup_s)
        start = max(self._low_water, now - WALK_BACK).replace(second=0, microsecond=0)
        sweep = self._swept_at is None or (now - self._swept_at).total_seconds() >= SWEEP_EVERY_S
        self.last_pass = self._promoter.run(start, sweep_before=start if sweep else None)
        if sweep:  # the walk and the sweep together saw every overdue task: what they left is all that waits
            self._swept_at = now
            self._held = dict(self.last_pass.unhandled)
        else:
            self._held.update(self.last_pass.unhandled)
        # Everything due was read to its end (an error would have raised). Keep the previous minute open: a
        # task can become due in it just before the minute turns; and never pass a task that is still due.
        drained = min([now - timedelta(minutes=1), *self._held.values()]).replace(second=0, microsecond=0)
        if drained > self._low_water:
            self._low_water = drained
            self._registry.advance_mark(MARK, drained)
        if self.last_pass.events:
            log.info("scheduler pass", extra={"events": dict(self.last_pass.events)})
        LAST_PASS.set_to_current_time()
        self._activity.passed()  # the overview's "last pass": a stuck scheduler fires nothing, so lag alone hides it
        return self.last_pass.queued

    def _step_backfill(self) -> None:
        """One step of the backfill, if it is still under way: a failing step never stops the pass."""
        if self._backfill is None:
            return
        try:
            done = self._backfill()
        except Exception:
            log.exception("backfill step failed; trying again next pass")
            return
        if done:
            self._backfill = None

    def _divide(self, now: datetime) -> None:
        """Share the due work with the other live replicas, by rank in the presence registry."""
        if self._instance is None:
            return
        if self._divided_at is not None and (now - self._divided_at).total_seconds() < DIVIDE_EVERY_S:
            return
        replicas = self._registry.alive().get("scheduler", [])
        if self._instance in replicas:  # not yet, in the moment before its first heartbeat lands
            self._promoter.divide(replicas.index(self._instance), len(replicas))
            self._divided_at = now

    def pause_s(self) -> float:
        """How long to wait before the next pass: the interval, or less if a task seen falls due sooner."""
        wake = self.last_pass.next_wake
        if wake is None:
            return self._interval_s
        return min(self._interval_s, max(0.0, (wake - self._clock.now()).total_seconds()))

    def tick(self) -> float:
        """One pass, then the pause before the next (what the run loop calls)."""
        self.run_once()
        return self.pause_s()

    def close(self) -> None:
        """Stop the promoter's threads."""
        self._promoter.close()
