"""A process's recent activity: tallied per minute from its commits, carried by its heartbeat as JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tqcore.activity import WINDOW_MINUTES, Activity, ActivityTally
from tqcore.domain.model import ErrorInfo, Event, EventType
from tqcore.domain.task import Task
from tqcore.metrics import observe_commit
from tqcore.presence import Presence
from tqcore.testing import InMemoryRegistry

pytestmark = pytest.mark.unit

#: 08:00:00 UTC on 2026-01-05, in Unix seconds: minute 29,463,360 (a whole minute).
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC).timestamp()
MINUTE0 = int(T0 // 60)


class Ticking:
    """A wall clock (Unix seconds) that moves only when told to."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def tally() -> tuple[ActivityTally, Ticking]:
    clock = Ticking()
    return ActivityTally(now=clock), clock


def test_outcomes_and_fired_slots_are_counted_in_the_minute_they_happened() -> None:
    # Given two successes and a failure in minute 0, a success and two fired slots (0.5 s and 2 s late) in minute 2
    activity, clock = tally()
    for outcome in ("succeeded", "succeeded", "failed", "cancelled"):  # a cancel is no finished attempt here
        activity.finished(outcome)
    clock.now += 150
    activity.finished("succeeded")
    activity.fired(0.5)
    activity.fired(2.0)
    activity.fired(-1.0)  # a slot fired "early" (clocks) counts as on time
    # When the heartbeat takes a snapshot
    seen = activity.snapshot()
    # Then the window ends with minute 2 and holds each minute's counts, the minutes between them zero
    assert seen is not None
    assert seen.minute == MINUTE0 + 2
    assert len(seen.succeeded) == len(seen.failed) == WINDOW_MINUTES
    assert seen.succeeded[-3:] == (2, 0, 1)
    assert seen.failed[-3:] == (1, 0, 0)
    assert seen.fired[-3:] == (0, 0, 3)
    assert seen.lag_s[-3:] == (0.0, 0.0, 2.0)
    assert (seen.per_minute(seen.succeeded, MINUTE0), seen.per_minute(seen.succeeded, MINUTE0 - 20)) == (2, 0)


def test_minutes_older_than_the_window_are_forgotten() -> None:
    activity, clock = tally()
    activity.finished("succeeded")
    clock.now += WINDOW_MINUTES * 60
    activity.finished("failed")
    seen = activity.snapshot()
    assert seen is not None
    assert (sum(seen.succeeded), sum(seen.failed)) == (0, 1)


def test_a_process_with_nothing_to_say_carries_no_activity_and_an_executor_carries_its_pool() -> None:
    activity, _ = tally()
    assert activity.snapshot() is None
    activity.pool = "media"
    seen = activity.snapshot()
    assert seen is not None
    assert (seen.pool, seen.succeeded, seen.lag_s) == ("media", (), ())


def test_the_scheduler_reports_when_its_last_pass_ended() -> None:
    activity, clock = tally()
    clock.now += 42.5
    activity.passed()
    seen = activity.snapshot()
    assert seen is not None
    assert seen.pass_at == T0 + 42.5


def test_the_json_text_round_trips_and_stays_small() -> None:
    activity, _clock = tally()
    activity.pool = "default"
    activity.finished("succeeded")
    activity.fired(0.25)
    activity.passed()
    seen = activity.snapshot()
    assert seen is not None
    text = seen.to_json()
    assert Activity.from_json(text) == seen
    assert len(text) < 400
    assert Activity.from_json('{"minute": 5}') == Activity(minute=5)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"succeeded": [1]}',
        '{"minute": "soon"}',
        '{"minute": 1, "lag_s": ["NaN"]}',
        '{"minute": 1, "succeeded": 3}',
        '{"minute": 1, "pass_at": "Infinity"}',
    ],
)
def test_an_unreadable_activity_is_unknown_rather_than_an_error(text: str) -> None:
    assert Activity.from_json(text) is None


def test_a_huge_or_negative_series_is_cut_to_the_window_and_to_zero() -> None:
    read = Activity.from_json('{"minute": 9, "succeeded": [' + ",".join(["-3"] + ["1"] * 100) + "]}")
    assert read is not None
    assert read.succeeded == (1,) * WINDOW_MINUTES


def test_commits_feed_the_tally_attempts_finished_and_slots_fired_with_their_lag() -> None:
    # Given a task's commits: a failed attempt, a successful one, and a run the scheduler queued 3 s after its slot
    activity, _ = tally()
    task = Task.submit(
        task_id="t-1", owner="alice", now=datetime.fromtimestamp(T0, UTC), submitted={}, type="echo", group="g"
    )
    at = datetime.fromtimestamp(T0, UTC)
    fail = Event(2, EventType.FAILED, at, "host:1", {"error": ErrorInfo("E", "boom").__dict__})
    succeed = Event(3, EventType.SUCCEEDED, at, "host:1", {})
    fired = Event(4, EventType.QUEUED, at, "scheduler", {"scheduled_for": at - timedelta(seconds=3)})
    by_user = Event(5, EventType.QUEUED, at, "alice", {"scheduled_for": at - timedelta(seconds=60)})
    # When they are observed as commits are
    observe_commit(task, [fail, succeed, fired, by_user], activity)
    # Then the tally holds one of each outcome and one fired slot, 3 s late (what a user queued is no slot fired)
    seen = activity.snapshot()
    assert seen is not None
    assert (seen.succeeded[-1], seen.failed[-1], seen.fired[-1], seen.lag_s[-1]) == (1, 1, 1, 3.0)


def test_the_presence_heartbeat_carries_the_activity() -> None:
    registry = InMemoryRegistry()
    activity, _ = tally()
    activity.pool = "media"
    activity.finished("succeeded")
    presence = Presence(registry, "executor", "host:1", interval_s=60, activity=activity.snapshot)
    presence.beat()
    [live] = registry.instances()
    assert (live.service, live.name) == ("executor", "host:1")
    assert live.activity is not None
    assert (live.activity.pool, live.activity.succeeded[-1]) == ("media", 1)
