"""SubmitTask: what the gateway accepts (contract section 4, POST /v1/tasks) and its idempotency fingerprint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from tqcore.domain.commands import RetrySpec, ScheduleSpec, SubmitTask
from tqcore.domain.model import Overlap, Priority, RetryPolicy, Schedule

pytestmark = pytest.mark.unit

BASE: dict[str, Any] = {"type": "echo", "group": "team-a"}
AT = "2026-03-01T12:00:00Z"


def submit(**body: Any) -> SubmitTask:
    return SubmitTask.model_validate({**BASE, **body})


def rejected(body: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as refused:
        SubmitTask.model_validate(body)
    return refused.value


# ----------------------------------------------------------------------------------------------- defaults
def test_minimal_submit_takes_the_contract_defaults() -> None:
    cmd = submit()
    assert cmd.payload == {}
    assert (cmd.priority, cmd.overlap, cmd.timeout_s) == (Priority.NORMAL, Overlap.SKIP, 300)
    assert cmd.retry.to_domain() == RetryPolicy(max_retries=5, backoff_base_s=2.0, backoff_max_s=300.0)
    assert (cmd.schedule, cmd.expires_at, cmd.idempotency_key, cmd.name, cmd.description) == (None,) * 5


def test_task_fields_convert_to_the_domain_in_utc() -> None:
    cmd = submit(
        payload=[1, "two"],
        priority="high",
        idempotency_key="k-1",
        expires_at="2026-03-01T21:00:00+09:00",
        schedule={"cron": "0 0 * * MON", "start_at": "2026-03-01T00:00:00-08:00"},
        retry={"max_retries": 0},
        timeout_s=60,
        name="n",
        description="d",
    )
    fields = cmd.task_fields()
    assert fields["expires_at"] == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert fields["expires_at"].utcoffset() == timedelta(0)
    assert fields["schedule"] == Schedule(
        cron="0 0 * * MON", timezone="UTC", start_at=datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    )
    assert fields["retry"] == RetryPolicy(max_retries=0)
    assert (fields["priority"], fields["payload"], fields["idempotency_key"]) == (Priority.HIGH, [1, "two"], "k-1")
    assert (fields["type"], fields["group"], fields["timeout_s"], fields["name"]) == ("echo", "team-a", 60, "n")


def test_schedule_at_is_converted_to_utc() -> None:
    spec = ScheduleSpec(at=datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))))
    assert spec.to_domain() == Schedule(at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    assert not spec.to_domain().is_repeating
    assert ScheduleSpec(every_s=60).to_domain().is_repeating


def test_cron_keeps_its_zone() -> None:
    spec = ScheduleSpec(cron="0 9 * * 1-5", timezone="America/Los_Angeles")
    assert spec.to_domain().timezone == "America/Los_Angeles"


# ----------------------------------------------------------------------------------------- type and group
@pytest.mark.parametrize("missing", ["type", "group"])
def test_type_and_group_are_required(missing: str) -> None:
    body = dict(BASE)
    del body[missing]
    error = rejected(body)
    assert [e["loc"] for e in error.errors()] == [(missing,)]


@pytest.mark.parametrize("value", ["", " ", "has space", "-leading-dash", "x" * 129, "a/b", "é"])
@pytest.mark.parametrize("field", ["type", "group"])
def test_bad_names_are_rejected(field: str, value: str) -> None:
    rejected({**BASE, field: value})


@pytest.mark.parametrize("value", ["echo", "a", "x" * 128, "team-a.b_c:d", "A1"])
def test_good_names_are_accepted(value: str) -> None:
    assert submit(type=value, group=value).type == value


# ------------------------------------------------------------------------------------- priority and bounds
@pytest.mark.parametrize("priority", ["urgent", "HIGH", "", 1, None])
def test_bad_priority_is_rejected(priority: Any) -> None:
    rejected({**BASE, "priority": priority})


@pytest.mark.parametrize("priority", ["high", "normal", "low"])
def test_contract_priorities_are_accepted(priority: str) -> None:
    assert submit(priority=priority).priority.value == priority


@pytest.mark.parametrize(("timeout_s", "ok"), [(0, False), (1, True), (43200, True), (43201, False), (-5, False)])
def test_timeout_is_1_to_43200(timeout_s: int, ok: bool) -> None:
    if ok:
        assert submit(timeout_s=timeout_s).timeout_s == timeout_s
    else:
        rejected({**BASE, "timeout_s": timeout_s})


@pytest.mark.parametrize(("max_retries", "ok"), [(-1, False), (0, True), (20, True), (21, False)])
def test_max_retries_is_0_to_20(max_retries: int, ok: bool) -> None:
    if ok:
        assert submit(retry={"max_retries": max_retries}).retry.max_retries == max_retries
    else:
        rejected({**BASE, "retry": {"max_retries": max_retries}})


@pytest.mark.parametrize(
    "retry",
    [
        {"backoff_base_s": 10, "backoff_max_s": 5},
        {"backoff_base_s": 301},  # above the default cap
        {"backoff_base_s": 0},
        {"backoff_max_s": 0},
        {"backoff_base_s": -1},
    ],
)
def test_bad_backoff_is_rejected(retry: dict[str, Any]) -> None:
    rejected({**BASE, "retry": retry})


def test_backoff_base_may_equal_max() -> None:
    assert RetrySpec(backoff_base_s=5, backoff_max_s=5).to_domain().delay_s(3, 0.0) == 5


@pytest.mark.parametrize(("field", "length"), [("idempotency_key", 0), ("idempotency_key", 256), ("name", 201)])
def test_string_lengths_are_bounded(field: str, length: int) -> None:
    rejected({**BASE, field: "k" * length})


# ------------------------------------------------------------------------------------------------ schedule
@pytest.mark.parametrize(
    "schedule",
    [
        {},
        {"at": AT, "every_s": 60},
        {"at": AT, "cron": "* * * * *"},
        {"every_s": 60, "cron": "* * * * *"},
        {"start_at": AT},
        {"at": AT, "start_at": AT},
        {"at": AT, "end_at": AT},
        {"every_s": 60, "timezone": "UTC"},  # a zone belongs to cron
        {"every_s": 60, "start_at": AT, "end_at": AT},  # end not after start
        {"every_s": 0.5},
        {"every_s": 366 * 86400 + 1},
    ],
)
def test_bad_schedules_are_rejected(schedule: dict[str, Any]) -> None:
    rejected({**BASE, "schedule": schedule})


@pytest.mark.parametrize(
    "schedule",
    [
        {"at": AT},
        {"every_s": 1},
        {"every_s": 3600, "start_at": AT, "end_at": "2026-03-02T12:00:00Z"},
        {"cron": "0 0 * * MON", "timezone": "America/Los_Angeles"},
        {"cron": "*/5 * * * *"},
    ],
)
def test_good_schedules_are_accepted(schedule: dict[str, Any]) -> None:
    assert submit(schedule=schedule).schedule is not None


@pytest.mark.parametrize("cron", ["61 * * * *", "* * * *", "0 0 * * * *", "not a cron", "0 0 * * FUNDAY", ""])
def test_invalid_or_non_five_field_cron_is_rejected(cron: str) -> None:
    rejected({**BASE, "schedule": {"cron": cron}})


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "utc+1"])
def test_unknown_time_zone_is_rejected(zone: str) -> None:
    rejected({**BASE, "schedule": {"cron": "0 0 * * *", "timezone": zone}})


# --------------------------------------------------------------------------------------- strictness
@pytest.mark.parametrize(
    "body",
    [
        {**BASE, "bogus": 1},
        {**BASE, "status": "succeeded"},
        {**BASE, "retry": {"max_tries": 3}},
        {**BASE, "schedule": {"every": 60}},
    ],
)
def test_unknown_fields_are_rejected(body: dict[str, Any]) -> None:
    error = rejected(body)
    assert {e["type"] for e in error.errors()} == {"extra_forbidden"}


@pytest.mark.parametrize(
    "body",
    [
        {**BASE, "expires_at": "2026-03-01T12:00:00"},
        {**BASE, "expires_at": datetime(2026, 3, 1, 12, 0)},  # naive on purpose
        {**BASE, "schedule": {"at": "2026-03-01T12:00:00"}},
        {**BASE, "schedule": {"every_s": 60, "start_at": "2026-03-01T12:00:00"}},
    ],
)
def test_timezone_naive_times_are_rejected(body: dict[str, Any]) -> None:
    rejected(body)


def test_the_command_is_immutable() -> None:
    cmd = submit()
    with pytest.raises(ValidationError):
        cmd.priority = Priority.HIGH  # type: ignore[misc]


# --------------------------------------------------------------------------------------------- fingerprint
def test_fingerprint_is_stable_for_equal_bodies() -> None:
    body = {**BASE, "payload": {"a": 1, "b": [1, 2]}, "schedule": {"at": AT}}
    assert SubmitTask.model_validate(body).fingerprint() == SubmitTask.model_validate(dict(body)).fingerprint()
    assert len(SubmitTask.model_validate(body).fingerprint()) == 64


@pytest.mark.parametrize(
    "explicit",
    [
        {"priority": "normal"},
        {"payload": {}},
        {"retry": {}},
        {"retry": {"max_retries": 5, "backoff_base_s": 2.0, "backoff_max_s": 300.0}},
        {"timeout_s": 300},
        {"overlap": "skip"},
        {"schedule": None},
    ],
)
def test_fingerprint_applies_defaults(explicit: dict[str, Any]) -> None:
    assert submit(**explicit).fingerprint() == submit().fingerprint()


def test_fingerprint_ignores_key_order_in_the_payload() -> None:
    assert submit(payload={"a": 1, "b": 2}).fingerprint() == submit(payload={"b": 2, "a": 1}).fingerprint()


@pytest.mark.parametrize(
    "change",
    [
        {"payload": {"a": 2}},
        {"payload": {"a": 1, "b": None}},
        {"payload": [{"a": 1}]},
        {"priority": "high"},
        {"type": "sleep"},
        {"group": "team-b"},
        {"timeout_s": 301},
        {"retry": {"max_retries": 4}},
        {"schedule": {"at": AT}},
        {"name": "x"},
    ],
)
def test_fingerprint_differs_when_the_request_differs(change: dict[str, Any]) -> None:
    assert submit(**{"payload": {"a": 1}, **change}).fingerprint() != submit(payload={"a": 1}).fingerprint()


def test_fingerprint_excludes_the_idempotency_key() -> None:
    assert submit(idempotency_key="k-1").fingerprint() == submit(idempotency_key="k-2").fingerprint()
    assert submit(idempotency_key="k-1").fingerprint() == submit().fingerprint()
