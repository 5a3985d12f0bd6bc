"""When a repeating schedule fires: its slots, pure and exact.

Interval slots are ``anchor + k * every_s`` in whole milliseconds (the precision timestamps are stored with),
so a slot read back from the store is exactly the slot that was computed. Cron slots are wall-clock times in
the schedule's zone, turned into instants by two rules for daylight-saving changes:

* a wall-clock time that does not exist (spring forward) fires once, at the first instant after the gap;
* a wall-clock time that happens twice (fall back) fires once, at its first occurrence. Each wall-clock time
  fires at most once, so a cron that runs every hour or more often does not run during the second pass through
  the repeated hour (Vixie cron runs such jobs in real time there; tq keeps the one rule).

Every function returns instants in UTC; ``end_at`` bounds the schedule (a slot at or after it never fires).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

from tqcore.domain.model import Schedule

#: Cron expressions that match nothing (``0 0 30 2 *``) stop the search after this many years.
_CRON_HORIZON_YEARS = 10
_MS = timedelta(milliseconds=1)
#: How many cron slots :func:`latest_slot` walks before it jumps.
_MAX_WALK = 10_000


class NoSlot(ValueError):
    """Raised when a schedule has no slot where one is required (it ended, or never matches)."""


def floor_ms(at: datetime) -> datetime:
    """``at`` truncated to whole milliseconds (what the store keeps)."""
    return at.replace(microsecond=at.microsecond - at.microsecond % 1000)


def first_slot(schedule: Schedule, anchor: datetime, not_before: datetime) -> datetime | None:
    """The first slot at or after ``not_before`` (and ``start_at``); ``None`` if the schedule is over."""
    start = max(not_before, schedule.start_at) if schedule.start_at else not_before
    return next_slot(schedule, anchor, start - _MS)


def next_slot(schedule: Schedule, anchor: datetime, after: datetime) -> datetime | None:
    """The first slot strictly after ``after``; ``None`` once the schedule has ended."""
    if schedule.start_at is not None and after < schedule.start_at:
        after = schedule.start_at - _MS
    slot: datetime | None
    if schedule.every_s is not None:
        slot = _next_interval_slot(schedule.every_s, _anchor(schedule, anchor), after)
    elif schedule.cron is not None:
        slot = _next_cron_slot(schedule.cron, ZoneInfo(schedule.timezone or "UTC"), after)
    else:
        raise ValueError("not a repeating schedule")
    if slot is None or (schedule.end_at is not None and slot >= schedule.end_at):
        return None
    return slot


def slots_until(schedule: Schedule, anchor: datetime, first: datetime, until: datetime) -> Iterator[datetime]:
    """Slots from ``first`` (itself a slot) up to and including ``until``, in order."""
    slot: datetime | None = first
    while slot is not None and slot <= until:
        yield slot
        slot = next_slot(schedule, anchor, slot)


def latest_slot(schedule: Schedule, anchor: datetime, first: datetime, now: datetime) -> tuple[datetime, int]:
    """The latest slot at or before ``now``, counting from ``first`` (a due slot), and how many slots that is.

    Interval slots are counted exactly; cron slots are walked, and past ``_MAX_WALK`` of them (a minutely
    cron after weeks of downtime) the count stops growing and the walk jumps to the last day before ``now``.
    """
    if schedule.every_s is not None:
        every = max(1, round(schedule.every_s * 1000)) * _MS
        last = min(now, schedule.end_at - _MS) if schedule.end_at is not None else now
        passed = (last - first) // every
        return first + passed * every, passed + 1
    latest, count = first, 0
    for slot in slots_until(schedule, anchor, first, now):
        latest, count = slot, count + 1
        if count >= _MAX_WALK:
            break
    else:
        return latest, count
    recent = next_slot(schedule, anchor, max(latest, now - timedelta(days=1)))
    for slot in slots_until(schedule, anchor, recent, now) if recent is not None else ():
        latest = slot
    return latest, count


def _anchor(schedule: Schedule, created_at: datetime) -> datetime:
    return floor_ms(schedule.start_at or created_at)


def _next_interval_slot(every_s: float, anchor: datetime, after: datetime) -> datetime:
    every_ms = max(1, round(every_s * 1000))
    elapsed_ms = (after - anchor) // _MS  # floor division: exact in integer milliseconds
    k = max(0, elapsed_ms // every_ms + 1)
    return anchor + k * every_ms * _MS


def _next_cron_slot(expression: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    wall = after.astimezone(zone).replace(tzinfo=None)
    # Wall-clock candidates after ``after``'s own wall time; one that names an instant not later than
    # ``after`` (the second pass through a repeated hour) has fired already and is passed over.
    times = croniter(expression, wall, ret_type=datetime)
    horizon = wall + timedelta(days=366 * _CRON_HORIZON_YEARS)
    while True:
        try:
            candidate: datetime = times.get_next(datetime)
        except CroniterBadDateError:
            return None
        if candidate > horizon:
            return None
        instant = wall_to_instant(candidate, zone)
        if instant > after:
            return instant


def wall_to_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive wall-clock time names in ``zone``, by the two daylight-saving rules above."""
    first = wall.replace(tzinfo=zone, fold=0)
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant  # it exists (if it happens twice, fold=0 is its first occurrence)
    # It falls in a gap: the first whole second whose wall-clock time is not before it ends the gap.
    low = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())  # still before the gap ends
    high = int(instant.timestamp()) + 1  # already after it
    low, high = min(low, high), max(low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
