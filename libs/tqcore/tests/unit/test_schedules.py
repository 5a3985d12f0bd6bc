"""Slots of repeating schedules (``tqcore.domain.schedules``): interval arithmetic, cron in a zone, DST, ends."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tqcore.domain import schedules
from tqcore.domain.codec import parse_ts, ts
from tqcore.domain.model import Schedule

pytestmark = pytest.mark.unit

FAST = settings(database=None, deadline=None, max_examples=300)

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
LA = ZoneInfo("America/Los_Angeles")
#: 2026 in Los Angeles: clocks spring forward on Sun 8 March (02:00 -> 03:00) and fall back on Sun 1 November
#: (02:00 -> 01:00).
SPRING_DAY = datetime(2026, 3, 8)
FALL_DAY = datetime(2026, 11, 1)


# ----------------------------------------------------------------------------------------------- helpers
def every(seconds: float, *, start_at: datetime | None = None, end_at: datetime | None = None) -> Schedule:
    return Schedule(every_s=seconds, start_at=start_at, end_at=end_at)


def cron(
    expression: str,
    zone: str = "America/Los_Angeles",
    *,
    start_at: datetime | None = None,
    end_at: datetime | None = None,
) -> Schedule:
    return Schedule(cron=expression, timezone=zone, start_at=start_at, end_at=end_at)


def la(wall: datetime, *, fold: int = 0) -> datetime:
    """The UTC instant of a wall-clock time in Los Angeles (``fold=1``: the second pass through a repeated hour)."""
    return wall.replace(tzinfo=LA, fold=fold).astimezone(UTC)


def slots_between(schedule: Schedule, start: datetime, end: datetime, anchor: datetime = T0) -> list[datetime]:
    """Every slot strictly after ``start`` and not after ``end``, by repeated ``next_slot``."""
    found: list[datetime] = []
    after = start
    while (slot := schedules.next_slot(schedule, anchor, after)) is not None and slot <= end:
        found.append(slot)
        after = slot
    return found


# ------------------------------------------------------------------------------------------ interval slots
def test_interval_slots_count_from_the_creation_time_floored_to_whole_milliseconds() -> None:
    # Given a task created at a time with sub-millisecond digits
    created = T0 + timedelta(microseconds=123_456)
    anchor = T0 + timedelta(milliseconds=123)
    # When its 10-second slots are listed
    got = slots_between(every(10), created, created + timedelta(seconds=35), anchor=created)
    # Then they are anchor + k * 10 s, the anchor being the creation time truncated to the millisecond
    assert got == [anchor + k * timedelta(seconds=10) for k in (1, 2, 3)]
    assert all(slot.microsecond % 1000 == 0 for slot in got)


def test_interval_slots_count_from_start_at_when_it_is_given() -> None:
    # Given an interval schedule starting 7.5 s after the task was created
    start_at = T0 + timedelta(seconds=7.5)
    schedule = every(10, start_at=start_at)
    # When slots are asked for from the creation time on
    got = slots_between(schedule, T0, T0 + timedelta(seconds=30))
    # Then the first slot is start_at itself and the rest follow it, whatever the creation time was
    assert got == [start_at, start_at + timedelta(seconds=10), start_at + timedelta(seconds=20)]


def test_a_fractional_interval_is_kept_to_the_millisecond() -> None:
    # Given a 1.25 s interval
    schedule = every(1.25)
    # When five slots are listed
    got = slots_between(schedule, T0, T0 + timedelta(seconds=6.25))
    # Then they are exactly 1250 ms apart, with no drift
    assert got == [T0 + k * timedelta(milliseconds=1250) for k in range(1, 6)]


def test_next_slot_is_strictly_after_the_time_given_even_when_that_time_is_a_slot() -> None:
    # Given a time that is itself a slot
    slot = T0 + timedelta(seconds=30)
    # When the next slot after it is asked for
    nxt = schedules.next_slot(every(10), T0, slot)
    # Then it is the following slot, not the same one again
    assert nxt == slot + timedelta(seconds=10)


def test_next_slot_one_millisecond_before_a_slot_is_that_slot() -> None:
    # Given a time one millisecond before a slot
    slot = T0 + timedelta(seconds=30)
    # When / Then that slot is next
    assert schedules.next_slot(every(10), T0, slot - MS) == slot


def test_before_the_anchor_the_first_slot_is_the_anchor() -> None:
    # Given a time well before the schedule's anchor
    before = T0 - timedelta(hours=1)
    # When / Then the anchor is the next slot (no slots exist before it)
    assert schedules.next_slot(every(10), T0, before) == T0


def test_before_start_at_the_next_slot_is_start_at() -> None:
    # Given a schedule that starts in an hour
    start_at = T0 + timedelta(hours=1)
    # When the next slot after now is asked for
    nxt = schedules.next_slot(every(10, start_at=start_at), T0, T0)
    # Then it is start_at
    assert nxt == start_at


def test_a_slot_at_end_at_never_fires_but_one_just_before_it_does() -> None:
    # Given a 10 s schedule that ends exactly on its third slot
    end_at = T0 + timedelta(seconds=30)
    schedule = every(10, end_at=end_at)
    # When slots are walked past the end
    got = slots_between(schedule, T0, T0 + timedelta(minutes=5))
    # Then the slot at end_at is not among them
    assert got == [T0 + timedelta(seconds=10), T0 + timedelta(seconds=20)]
    assert schedules.next_slot(schedule, T0, T0 + timedelta(seconds=20)) is None
    # And moving end_at one millisecond later lets that slot fire
    later = every(10, end_at=end_at + MS)
    assert schedules.next_slot(later, T0, T0 + timedelta(seconds=20)) == end_at


def test_first_slot_is_at_or_after_not_before() -> None:
    # Given a 10 s schedule anchored at T0
    schedule = every(10)
    # When the first slot at or after a slot time, and after a time between slots, is asked for
    on_slot = T0 + timedelta(seconds=20)
    between = T0 + timedelta(seconds=21)
    # Then a slot time counts itself; a time between slots gets the following one
    assert schedules.first_slot(schedule, T0, on_slot) == on_slot
    assert schedules.first_slot(schedule, T0, between) == T0 + timedelta(seconds=30)


def test_first_slot_honours_start_at_and_is_none_once_the_schedule_has_ended() -> None:
    start_at = T0 + timedelta(minutes=5)
    end_at = T0 + timedelta(minutes=10)
    schedule = every(60, start_at=start_at, end_at=end_at)
    # Given a time before start_at, then one past end_at
    # When / Then the first slot is start_at, and there is none after the end
    assert schedules.first_slot(schedule, T0, T0) == start_at
    assert schedules.first_slot(schedule, T0, end_at) is None


def test_a_one_shot_schedule_has_no_slots() -> None:
    # Given a schedule with only ``at``
    schedule = Schedule(at=T0)
    # When / Then asking for its next slot is an error, not a silent answer
    with pytest.raises(ValueError, match="not a repeating schedule"):
        schedules.next_slot(schedule, T0, T0)


# -------------------------------------------------------------------------------------------- cron slots
def test_cron_slots_are_wall_clock_times_in_the_schedule_zone() -> None:
    # Given a weekday 09:00 cron in New York (EST in January: UTC-5)
    schedule = cron("0 9 * * 1-5", zone="America/New_York")
    ny = ZoneInfo("America/New_York")
    # When the slots of one week (Mon 5 Jan to Sun 11 Jan 2026) are listed
    got = slots_between(schedule, datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC))
    # Then there is one per weekday, at 09:00 local time, returned in UTC
    assert got == [datetime(2026, 1, day, 9, 0, tzinfo=ny).astimezone(UTC) for day in range(5, 10)]
    assert all(slot.tzinfo is UTC for slot in got)
    assert got[0] == datetime(2026, 1, 5, 14, 0, tzinfo=UTC)


def test_cron_without_a_zone_is_utc() -> None:
    # Given a cron schedule whose timezone is left out
    schedule = Schedule(cron="30 6 * * *")
    # When / Then its slot is 06:30 UTC
    assert schedules.next_slot(schedule, T0, T0) == datetime(2026, 1, 6, 6, 30, tzinfo=UTC)


def test_cron_slots_respect_start_at_and_end_at() -> None:
    # Given an hourly cron limited to [10:00, 12:00) UTC
    schedule = cron("0 * * * *", zone="UTC", start_at=T0.replace(hour=10), end_at=T0.replace(hour=12))
    # When slots are walked over the whole day
    got = slots_between(schedule, T0, T0 + timedelta(days=1))
    # Then only 10:00 and 11:00 fire: 12:00 is the end and does not
    assert got == [T0.replace(hour=10), T0.replace(hour=11)]


def test_a_cron_that_never_matches_has_no_slot() -> None:
    # Given a cron for 30 February
    schedule = cron("0 0 30 2 *", zone="UTC")
    # When / Then there is no next slot and no first slot
    assert schedules.next_slot(schedule, T0, T0) is None
    assert schedules.first_slot(schedule, T0, T0) is None


# ----------------------------------------------------------------------------------- daylight saving time
def test_a_daily_cron_in_the_spring_forward_gap_fires_once_at_the_end_of_the_gap() -> None:
    # Given 02:30 every day in Los Angeles; on 8 March 2026 02:30 does not exist
    schedule = cron("30 2 * * *")
    # When the slots from 6 to 10 March are listed
    got = slots_between(schedule, la(datetime(2026, 3, 6)), la(datetime(2026, 3, 11)))
    # Then the gap day fires once, at 03:00 PDT (10:00Z), and the days around it at 02:30 local time
    assert got == [
        la(datetime(2026, 3, 6, 2, 30)),
        la(datetime(2026, 3, 7, 2, 30)),
        la(SPRING_DAY.replace(hour=3)),
        la(datetime(2026, 3, 9, 2, 30)),
        la(datetime(2026, 3, 10, 2, 30)),
    ]
    assert got[2] == datetime(2026, 3, 8, 10, 0, tzinfo=UTC)
    assert got[1] == datetime(2026, 3, 7, 10, 30, tzinfo=UTC)  # PST, UTC-8
    assert got[3] == datetime(2026, 3, 9, 9, 30, tzinfo=UTC)  # PDT, UTC-7


def test_a_cron_every_15_minutes_inside_the_missing_hour_fires_exactly_once() -> None:
    # Given */15 during the 02:00 hour, which does not exist on the spring-forward day
    schedule = cron("*/15 2 * * *")
    # When the slots of the day before, the day itself and the day after are listed
    got = slots_between(schedule, la(datetime(2026, 3, 7)), la(datetime(2026, 3, 10)))
    # Then the missing hour fires once, at 10:00Z (03:00 PDT); the other days fire four times
    on_gap_day = [slot for slot in got if slot.astimezone(LA).date() == SPRING_DAY.date()]
    assert on_gap_day == [datetime(2026, 3, 8, 10, 0, tzinfo=UTC)]
    assert len(got) == 4 + 1 + 4
    assert len(set(got)) == len(got)


def test_a_daily_cron_outside_the_repeated_hour_fires_once_on_the_fall_back_day() -> None:
    # Given 02:30 every day; on 1 November 2026 02:30 exists once (PST, after the repeated hour)
    schedule = cron("30 2 * * *")
    # When the slots of that day are listed
    got = slots_between(schedule, la(FALL_DAY), la(datetime(2026, 11, 2)))
    # Then it fires once, at 10:30Z
    assert got == [datetime(2026, 11, 1, 10, 30, tzinfo=UTC)]


def test_a_daily_cron_inside_the_repeated_hour_fires_once_at_its_first_occurrence() -> None:
    # Given 01:30 every day; on 1 November 2026 01:30 happens twice (08:30Z in PDT, 09:30Z in PST)
    schedule = cron("30 1 * * *")
    first, second = la(FALL_DAY.replace(hour=1, minute=30)), la(FALL_DAY.replace(hour=1, minute=30), fold=1)
    assert (first, second) == (datetime(2026, 11, 1, 8, 30, tzinfo=UTC), datetime(2026, 11, 1, 9, 30, tzinfo=UTC))
    # When slots are walked across the fall-back day
    got = slots_between(schedule, la(datetime(2026, 10, 31, 12)), la(datetime(2026, 11, 2, 12)))
    # Then the day fires at the first 01:30 only, and the next slot after it is the following day's
    assert got == [first, la(datetime(2026, 11, 2, 1, 30))]
    assert schedules.next_slot(schedule, T0, first) == la(datetime(2026, 11, 2, 1, 30))
    # And even from inside the second pass through the hour, the repeated 01:30 does not fire
    assert schedules.next_slot(schedule, T0, second - timedelta(minutes=1)) == la(datetime(2026, 11, 2, 1, 30))


def test_an_hourly_cron_never_fires_twice_at_one_instant_over_the_fall_back_day() -> None:
    # Given an hourly cron in Los Angeles
    schedule = cron("0 * * * *")
    # When the slots of the 25-hour fall-back day are listed
    got = slots_between(schedule, la(FALL_DAY) - MS, la(datetime(2026, 11, 2)) - MS)
    # Then the instants strictly increase, and each wall-clock hour fires once (the repeated 01:00 too)
    assert all(a < b for a, b in itertools.pairwise(got))
    assert [slot.astimezone(LA).hour for slot in got] == list(range(24))
    assert la(FALL_DAY.replace(hour=1), fold=1) not in got


def test_wall_to_instant_maps_a_gap_to_its_end_and_a_repeated_time_to_its_first_occurrence() -> None:
    # Given a wall time in the spring gap, one in the repeated hour, and an ordinary one
    # When / Then each maps to the instant the daylight-saving rules name
    assert schedules.wall_to_instant(SPRING_DAY.replace(hour=2, minute=10), LA) == la(SPRING_DAY.replace(hour=3))
    assert schedules.wall_to_instant(FALL_DAY.replace(hour=1, minute=10), LA) == la(FALL_DAY.replace(hour=1, minute=10))
    assert schedules.wall_to_instant(datetime(2026, 7, 1, 12), LA) == datetime(2026, 7, 1, 19, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ latest_slot
def test_latest_slot_of_an_interval_schedule_counts_the_passed_slots_exactly() -> None:
    # Given a 10 s schedule whose slot at T0+10s came due and was not acted on until T0+65.5s
    first = T0 + timedelta(seconds=10)
    # When the latest slot up to then is asked for
    latest, count = schedules.latest_slot(every(10), T0, first, T0 + timedelta(seconds=65.5))
    # Then it is T0+60s, the sixth slot counted from the first
    assert (latest, count) == (T0 + timedelta(seconds=60), 6)


def test_latest_slot_counts_the_first_slot_itself_when_it_is_the_only_one() -> None:
    first = T0 + timedelta(seconds=10)
    # Given / When the due slot is the latest one
    # Then one slot is counted
    assert schedules.latest_slot(every(10), T0, first, first) == (first, 1)


def test_latest_slot_of_an_interval_schedule_stops_before_end_at() -> None:
    # Given a schedule ending at T0+30s, looked at long after
    schedule = every(10, end_at=T0 + timedelta(seconds=30))
    first = T0 + timedelta(seconds=10)
    # When / Then the latest slot is T0+20s (the slot at end_at never fires) and two slots are counted
    assert schedules.latest_slot(schedule, T0, first, T0 + timedelta(hours=1)) == (T0 + timedelta(seconds=20), 2)


def test_latest_slot_of_a_cron_schedule_walks_its_slots() -> None:
    # Given a five-minute cron whose 08:00 slot was due, looked at just before 09:00
    schedule = cron("*/5 * * * *", zone="UTC")
    # When the latest slot is asked for
    latest, count = schedules.latest_slot(schedule, T0, T0, T0 + timedelta(minutes=59, seconds=59))
    # Then it is 08:55, the twelfth slot from 08:00
    assert (latest, count) == (T0 + timedelta(minutes=55), 12)


def test_latest_slot_of_a_cron_schedule_counts_the_spring_gap_once() -> None:
    # Given */15 in the missing hour, due from the day before's first slot, looked at on the day after
    schedule = cron("*/15 2 * * *")
    first = la(datetime(2026, 3, 7, 2, 0))
    # When the latest slot is asked for
    latest, count = schedules.latest_slot(schedule, T0, first, la(datetime(2026, 3, 9, 2, 20)))
    # Then 4 + 1 + 2 slots have passed, the latest at 02:15 on 9 March
    assert (latest, count) == (la(datetime(2026, 3, 9, 2, 15)), 7)


def test_slots_until_lists_the_due_slots_in_order() -> None:
    first = T0 + timedelta(seconds=10)
    # Given / When the slots from the first to a time between slots are listed
    got = list(schedules.slots_until(every(10), T0, first, T0 + timedelta(seconds=45)))
    # Then they are the four slots up to it
    assert got == [T0 + timedelta(seconds=s) for s in (10, 20, 30, 40)]


# ---------------------------------------------------------------------------------------------- property
every_ms = st.integers(min_value=1000, max_value=10_000_000)
anchors = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
offsets_us = st.integers(min_value=0, max_value=40 * 366 * 86_400 * 10**6)


@FAST
@given(every_ms=every_ms, anchor=anchors, offset_us=offsets_us)
def test_interval_next_slot_is_after_skips_nothing_and_is_stable_under_storage(
    every_ms: int, anchor: datetime, offset_us: int
) -> None:
    # Given an interval of whole milliseconds (1 s to 10 000 s) and any time at or after the anchor
    schedule = every(every_ms / 1000)
    period = timedelta(milliseconds=every_ms)
    after = anchor + timedelta(microseconds=offset_us)
    # When the next slot is computed
    slot = schedules.next_slot(schedule, anchor, after)
    assert slot is not None
    # Then it is strictly after the time given, and no slot lies between them
    assert slot > after
    assert slot - period <= after
    # And it sits on the anchor's millisecond grid
    assert (slot - schedules.floor_ms(anchor)) % period == timedelta(0)
    # And once stored (millisecond timestamps) and read back, it is the same instant and leads to the same
    # next slot: a slot is never run twice
    stored = parse_ts(ts(slot))
    assert stored == slot
    assert schedules.next_slot(schedule, anchor, stored) == schedules.next_slot(schedule, anchor, slot)
    assert schedules.next_slot(schedule, anchor, stored) == slot + period
