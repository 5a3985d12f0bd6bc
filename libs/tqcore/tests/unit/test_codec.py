"""The task's JSON form (contract section 3) and events (section 4): shape, timestamps and round-trips."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tqcore.domain.codec import (
    event_from_dict,
    event_to_dict,
    parse_ts,
    schedule_to_dict,
    task_from_dict,
    task_to_dict,
    ts,
)
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo, Event, EventType, Schedule, Status
from tqcore.domain.task import Task

pytestmark = pytest.mark.unit

FAST = settings(database=None, deadline=None, max_examples=150)
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
WORKER = "host-a:101"
BOOM = ErrorInfo("ValueError", "boom")

#: Every key of the task resource in contract section 3.
CONTRACT_KEYS = {
    "id",
    "type",
    "group",
    "owner",
    "name",
    "description",
    "payload",
    "priority",
    "status",
    "version",
    "attempts",
    "retries",
    "retry",
    "timeout_s",
    "schedule",
    "overlap",
    "expires_at",
    "idempotency_key",
    "worker",
    "created_at",
    "updated_at",
    "queued_at",
    "started_at",
    "finished_at",
    "next_run_at",
    "run_count",
    "last_error",
    "result",
}
TIMESTAMP_KEYS = {
    "created_at",
    "updated_at",
    "queued_at",
    "started_at",
    "finished_at",
    "next_run_at",
    "expires_at",
    "lease_expires_at",
}
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def build(status: Status, now: datetime = T0, payload: Any = None, **body: Any) -> Task:
    """A task brought into ``status`` through legal transitions, starting at ``now``."""
    s = timedelta(seconds=1)
    fields = {"type": "echo", "group": "team-a", "payload": payload, "expires_at": now + timedelta(hours=1), **body}
    if status is Status.SCHEDULED:
        fields["schedule"] = {"at": now + timedelta(minutes=5)}
    if status is Status.PAUSED:
        fields["schedule"] = {"every_s": 60, "start_at": now + timedelta(minutes=5)}
    if status is Status.FAILED:
        fields["retry"] = {"max_retries": 0}
    cmd = SubmitTask.model_validate(fields)
    task = Task.submit(
        task_id="01hq-task", owner="alice", now=now, submitted=cmd.model_dump(mode="json"), **cmd.task_fields()
    )
    if status in (Status.SCHEDULED, Status.QUEUED):
        return task
    if status is Status.CANCELLED:
        task.request_cancel("bob", now + s)
        return task
    if status is Status.EXPIRED:
        task.expire(now + timedelta(hours=2))
        return task
    if status is Status.PAUSED:
        task.pause("bob", now + s)
        return task
    task.claim(1, WORKER, now + s, 30)
    if status is Status.SUCCEEDED:
        task.succeed(1, WORKER, payload, now + 2 * s)
    elif status in (Status.RETRYING, Status.FAILED):
        task.fail(1, WORKER, BOOM, now + 2 * s, jitter=0.25)
    return task


def via_json(value: Any) -> Any:
    return json.loads(json.dumps(value))


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.builds(
    lambda naive, tz: naive.replace(microsecond=naive.microsecond // 1000 * 1000, tzinfo=tz),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 1, 1)),
    offsets,
)


# ---------------------------------------------------------------------------------------------- the shape
@pytest.mark.parametrize("status", list(Status))
def test_resource_has_every_contract_key(status: Status) -> None:
    resource = task_to_dict(build(status))
    assert CONTRACT_KEYS - set(resource) == set()
    assert set(resource["retry"]) == {"max_retries", "backoff_base_s", "backoff_max_s"}
    assert resource["status"] == status.value
    json.dumps(resource)  # plain JSON, nothing left to serialise


@pytest.mark.parametrize("status", list(Status))
def test_timestamps_are_utc_with_a_z(status: Status) -> None:
    resource = task_to_dict(
        build(status, now=datetime(2026, 6, 1, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))))
    )
    stamps = {key: resource[key] for key in TIMESTAMP_KEYS if resource[key] is not None}
    assert {"created_at", "updated_at"} <= set(stamps)
    for key, value in stamps.items():
        assert RFC3339_UTC.match(value), (key, value)
    assert resource["created_at"] == "2026-06-01T08:00:00.123Z"


def test_resource_of_a_fresh_task_matches_the_contract_example() -> None:
    resource = task_to_dict(build(Status.QUEUED, payload={}, expires_at=None))
    expected = {
        "type": "echo",
        "group": "team-a",
        "owner": "alice",
        "name": None,
        "description": None,
        "payload": {},
        "priority": "normal",
        "status": "queued",
        "version": 2,
        "attempts": 0,
        "retries": 0,
        "retry": {"max_retries": 5, "backoff_base_s": 2.0, "backoff_max_s": 300.0},
        "timeout_s": 300,
        "schedule": None,
        "overlap": "skip",
        "expires_at": None,
        "idempotency_key": None,
        "worker": None,
        "started_at": None,
        "finished_at": None,
        "next_run_at": None,
        "run_count": 0,
        "last_error": None,
        "result": None,
        "cancel_requested": False,
    }
    assert {k: resource[k] for k in expected} == expected
    assert resource["queued_at"] == resource["created_at"] == "2026-01-05T08:00:00.000Z"


@pytest.mark.parametrize(("attempts", "retries"), [(0, 0), (1, 0), (2, 1), (6, 5), (21, 20)])
def test_retries_is_attempts_minus_one(attempts: int, retries: int) -> None:
    task = build(Status.QUEUED)
    task.attempts = attempts
    assert task_to_dict(task)["retries"] == retries


def test_running_task_shows_its_worker_and_lease() -> None:
    resource = task_to_dict(build(Status.RUNNING))
    assert (resource["worker"], resource["attempts"]) == (WORKER, 1)
    assert resource["lease_expires_at"] == "2026-01-05T08:00:31.000Z"


def test_failed_task_shows_its_last_error() -> None:
    resource = task_to_dict(build(Status.FAILED))
    assert resource["last_error"] == {"type": "ValueError", "message": "boom"}
    assert resource["finished_at"] == "2026-01-05T08:00:02.000Z"


def test_schedule_leaves_out_unset_keys() -> None:
    assert schedule_to_dict(None) is None
    assert schedule_to_dict(Schedule(every_s=60.0)) == {"every_s": 60.0}
    cron = Schedule(cron="0 0 * * MON", timezone="America/Los_Angeles", start_at=T0)
    assert schedule_to_dict(cron) == {
        "cron": "0 0 * * MON",
        "timezone": "America/Los_Angeles",
        "start_at": "2026-01-05T08:00:00.000Z",
    }


# ------------------------------------------------------------------------------------------ timestamps
def test_ts_converts_to_utc_and_keeps_milliseconds() -> None:
    plus_nine = timezone(timedelta(hours=9))
    assert ts(datetime(2026, 1, 1, 9, 0, 0, 987654, tzinfo=plus_nine)) == "2026-01-01T00:00:00.987Z"
    assert ts(None) is None


def test_parse_ts_accepts_any_offset_and_returns_utc() -> None:
    parsed = parse_ts("2026-01-01T02:00:00.500+02:00")
    assert parsed == datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)
    assert parse_ts(None) is None


@FAST
@given(at=instants)
def test_ts_round_trips_at_millisecond_precision(at: datetime) -> None:
    text = ts(at)
    assert text is not None
    assert RFC3339_UTC.match(text)
    assert parse_ts(text) == at


# ----------------------------------------------------------------------------------------- round-trips
@FAST
@given(
    status=st.sampled_from(list(Status)),
    payload=json_values,
    now=instants,
    name=st.none() | st.text(max_size=30),
    priority=st.sampled_from(["high", "normal", "low"]),
)
def test_task_round_trips_through_json(
    status: Status, payload: Any, now: datetime, name: str | None, priority: str
) -> None:
    task = build(status, now=now, payload=payload, name=name, priority=priority)
    again = task_from_dict(via_json(task_to_dict(task)))
    assert again == task
    assert again.status is status
    assert task_to_dict(again) == via_json(task_to_dict(task))


def test_transient_state_round_trips() -> None:
    # a running task asked to stop, and a queued task re-sent twice
    running = build(Status.RUNNING)
    running.request_cancel("bob", T0 + timedelta(seconds=3))
    resent = build(Status.QUEUED)
    resent.resend(T0 + timedelta(seconds=30))
    resent.resend(T0 + timedelta(seconds=90))
    for task in (running, resent):
        again = task_from_dict(via_json(task_to_dict(task)))
        assert again == task
    assert task_to_dict(running)["cancel_requested"] is True
    assert task_to_dict(resent)["resends"] == 2


@pytest.mark.parametrize(
    "schedule",
    [
        {"at": "2026-01-05T09:00:00Z"},
        {"every_s": 90, "start_at": "2026-01-05T09:00:00Z", "end_at": "2026-02-05T09:00:00Z"},
        {"cron": "0 0 * * MON", "timezone": "America/Los_Angeles"},
    ],
)
def test_schedules_round_trip(schedule: dict[str, Any]) -> None:
    task = build(Status.QUEUED, schedule=schedule)
    assert task_from_dict(via_json(task_to_dict(task))).schedule == task.schedule


def test_missing_optional_counters_take_their_defaults() -> None:
    raw = task_to_dict(build(Status.QUEUED))
    for key in ("run_count", "resends", "cancel_requested", "lease_expires_at", "result", "name"):
        del raw[key]
    task = task_from_dict(raw)
    assert (task.run_count, task.resends, task.cancel_requested, task.lease_expires_at) == (0, 0, False, None)


# ---------------------------------------------------------------------------------------------- events
@pytest.mark.parametrize("status", list(Status))
def test_events_round_trip_and_are_plain_json(status: Status) -> None:
    for event in build(status).pending_events:
        raw = event_to_dict(event)
        assert set(raw) == {"seq", "type", "at", "actor", "data"}
        assert RFC3339_UTC.match(raw["at"])
        assert via_json(raw) == raw
        again = event_from_dict(via_json(raw))
        assert (again.seq, again.type, again.at, again.actor) == (event.seq, event.type, event.at, event.actor)
        assert event_to_dict(again) == raw


def test_datetimes_inside_event_data_become_timestamps() -> None:
    task = build(Status.RETRYING)
    retry_event = task.pending_events[-1]
    assert retry_event.type is EventType.RETRY_SCHEDULED
    raw = event_to_dict(retry_event)
    # base 2 s less a quarter of half of it: 1.75 s after the failure at T0 + 2 s
    assert raw["data"] == {"next_attempt": 2, "delay_s": 1.75, "next_run_at": "2026-01-05T08:00:03.750Z"}


def test_event_data_defaults_to_empty() -> None:
    event = event_from_dict({"seq": 3, "type": "cancelled", "at": "2026-01-05T08:00:00Z", "actor": "bob", "data": None})
    assert event == Event(seq=3, type=EventType.CANCELLED, at=T0, actor="bob", data={})


@pytest.mark.parametrize("year", [1970, 999, 1, 8999])
def test_timestamps_of_any_year_round_trip(year: int) -> None:
    # Years below 1000 must be zero-padded, or parse_ts cannot read them back (a stored task would be unreadable).
    at = datetime(year, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    text = ts(at)
    assert text is not None
    assert text.startswith(f"{year:04d}-")
    assert parse_ts(text) == at


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00", "1969-12-31T23:59:59Z"])
def test_submit_refuses_timestamps_outside_1970_to_9000(value: str) -> None:
    with pytest.raises(ValidationError):
        SubmitTask.model_validate({"type": "echo", "group": "g", "expires_at": value})
