"""Runs as a pure projection of a task's events: every event shape, retries, lost and timed-out runs, order, pages."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.domain.codec import event_from_dict, event_to_dict
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo, Event, EventType, RunStatus
from tqcore.domain.runs import Run, find_run, page_of_runs, project_runs, run_to_dict
from tqcore.domain.task import Task

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
W1, W2 = "host-a:101", "host-b:202"
BOOM = {"type": "ValueError", "message": "boom"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ev(seq: int, type: str, **data: Any) -> Event:
    """An event at ``T0 + seq`` seconds."""
    return Event(seq=seq, type=EventType(type), at=at(seq), actor="someone", data=data)


def claimed(seq: int, attempt: int, worker: str = W1, run: int = 1) -> Event:
    return ev(seq, "claimed", attempt=attempt, run_id=f"{run}.{attempt}", worker=worker)


def failed(seq: int, attempt: int, run_status: str = "failed", run: int = 1, **extra: Any) -> Event:
    data = {"attempt": attempt, "run_id": f"{run}.{attempt}", "run_status": run_status, "error": BOOM, **extra}
    return Event(seq=seq, type=EventType.FAILED, at=at(seq), actor="x", data={"duration_ms": 1000, **data})


def submitted_and_queued() -> list[Event]:
    return [ev(1, "submitted"), ev(2, "queued", attempt=1, priority="normal")]


def summary(runs: list[Run]) -> list[tuple[str, int, str]]:
    return [(run.run_id, run.attempt, run.status.value) for run in runs]


# ------------------------------------------------------------------------------------------- one attempt
def test_no_events_and_no_claim_mean_no_runs() -> None:
    assert project_runs([]) == []
    assert project_runs(submitted_and_queued()) == []


def test_a_claim_starts_a_running_run() -> None:
    (run,) = project_runs([*submitted_and_queued(), claimed(3, 1)])
    assert run == Run(seq=3, run_id="1.1", attempt=1, status=RunStatus.RUNNING, started_at=at(3), worker=W1)
    assert (run.finished_at, run.duration_ms, run.error, run.scheduled_for, run.log_size) == (None,) * 5


def test_success_ends_the_run_with_its_duration() -> None:
    events = [*submitted_and_queued(), claimed(3, 1), ev(4, "succeeded", attempt=1, run_id="1.1", duration_ms=1000)]
    (run,) = project_runs(events)
    assert (run.status, run.finished_at, run.duration_ms, run.error) == (RunStatus.SUCCEEDED, at(4), 1000, None)


@pytest.mark.parametrize("run_status", ["failed", "timed_out", "lost", "cancelled"])
def test_a_failed_event_ends_the_run_with_its_run_status_and_error(run_status: str) -> None:
    (run,) = project_runs([*submitted_and_queued(), claimed(3, 1), failed(4, 1, run_status)])
    assert run.status is RunStatus(run_status)
    assert run.error == ErrorInfo("ValueError", "boom")
    assert (run.finished_at, run.duration_ms) == (at(4), 1000)


@pytest.mark.parametrize("run_status", [None, "exploded"])
def test_a_failed_event_without_a_known_run_status_is_a_failed_run(run_status: str | None) -> None:
    data: dict[str, Any] = {"attempt": 1, "run_id": "1.1", "error": BOOM}
    if run_status is not None:
        data["run_status"] = run_status
    (run,) = project_runs([claimed(3, 1), ev(4, "failed", **data)])
    assert run.status is RunStatus.FAILED


def test_an_acknowledged_cancel_ends_the_run_cancelled() -> None:
    events = [claimed(3, 1), ev(4, "cancel_requested", attempt=1), ev(5, "cancelled", attempt=1, run_id="1.1")]
    (run,) = project_runs(events)
    assert (run.status, run.finished_at) == (RunStatus.CANCELLED, at(5))


def test_a_cancel_without_a_run_id_does_not_rewrite_an_ended_run() -> None:
    # A failed attempt of a task whose cancel was requested: failed, then the task is cancelled.
    (run,) = project_runs([claimed(3, 1), failed(4, 1), ev(5, "cancelled")])
    assert (run.status, run.finished_at) == (RunStatus.FAILED, at(4))


def test_a_task_cancelled_before_any_claim_has_no_runs() -> None:
    assert project_runs([*submitted_and_queued(), ev(3, "cancelled")]) == []


def test_an_expired_lease_makes_the_run_lost_even_without_a_failed_event() -> None:
    (run,) = project_runs([claimed(3, 1), ev(4, "lease_expired", attempt=1, worker=W1)])
    assert (run.status, run.finished_at, run.error) == (RunStatus.LOST, at(4), None)


def test_an_expired_lease_then_its_failed_event_gives_a_lost_run_with_the_error() -> None:
    lost = failed(5, 1, "lost", error={"type": "LeaseExpired", "message": f"lease of {W1} expired"})
    (run,) = project_runs([claimed(3, 1), ev(4, "lease_expired", attempt=1, worker=W1), lost])
    assert (run.status, run.finished_at, run.error) == (
        RunStatus.LOST,
        at(5),
        ErrorInfo("LeaseExpired", lost.data["error"]["message"]),
    )


def test_a_task_dead_lettered_while_running_closes_the_run_as_lost() -> None:
    (run,) = project_runs([claimed(3, 1), ev(4, "dead_lettered", attempts=1, receives=5)])
    assert (run.status, run.finished_at) == (RunStatus.LOST, at(4))


def test_an_outcome_without_a_claim_is_ignored() -> None:
    assert project_runs([*submitted_and_queued(), failed(3, 1), ev(4, "succeeded", attempt=2, run_id="1.2")]) == []


def test_an_outcome_without_a_run_id_ends_the_run_of_its_attempt() -> None:
    (run,) = project_runs([claimed(3, 1), ev(4, "succeeded", attempt=1)])
    assert run.status is RunStatus.SUCCEEDED


def test_a_claim_without_a_run_id_still_gets_a_unique_one() -> None:
    (run,) = project_runs([ev(3, "claimed", attempt=1)])
    assert (run.run_id, run.worker) == ("seq-3", None)


# ------------------------------------------------------------------------------------ several attempts
def retried_three_times() -> list[Event]:
    """Attempt 1 fails, attempt 2 times out, attempt 3 succeeds; retries wait for ``next_run_at``."""
    return [
        *submitted_and_queued(),
        claimed(3, 1, W1),
        failed(4, 1),
        ev(5, "retry_scheduled", next_attempt=2, delay_s=2.0, next_run_at=at(6)),
        ev(6, "queued", attempt=2, priority="normal"),
        claimed(7, 2, W2),
        failed(8, 2, "timed_out"),
        ev(9, "retry_scheduled", next_attempt=3, delay_s=4.0, next_run_at=at(10)),
        ev(10, "queued", attempt=3, priority="normal"),
        claimed(11, 3, W1),
        ev(12, "succeeded", attempt=3, run_id="1.3", duration_ms=1000),
    ]


def test_retries_are_one_run_each_newest_first() -> None:
    runs = project_runs(retried_three_times())
    assert summary(runs) == [("1.3", 3, "succeeded"), ("1.2", 2, "timed_out"), ("1.1", 1, "failed")]
    assert [run.worker for run in runs] == [W1, W2, W1]
    assert [run.scheduled_for for run in runs] == [at(10), at(6), None]


def test_the_order_of_the_input_does_not_matter() -> None:
    events = retried_three_times()
    random.Random(7).shuffle(events)
    assert project_runs(events) == project_runs(retried_three_times())


def test_a_scheduled_task_runs_at_its_scheduled_time_and_a_resend_keeps_it() -> None:
    events = [
        ev(1, "submitted"),
        ev(2, "scheduled", next_run_at=at(60).isoformat()),  # as stored: a string
        ev(3, "queued", attempt=1, priority="normal"),
        ev(4, "queued", attempt=1, resend=1),
        claimed(5, 1),
    ]
    (run,) = project_runs(events)
    assert run.scheduled_for == at(60)


def test_a_released_attempt_queued_again_at_once_has_no_scheduled_time() -> None:
    events = [
        ev(1, "scheduled", next_run_at=at(2)),
        ev(2, "queued", attempt=1),
        claimed(3, 1),
        failed(4, 1, "lost"),
        ev(5, "queued", attempt=2),
        claimed(6, 2),
    ]
    runs = project_runs(events)
    assert summary(runs) == [("1.2", 2, "running"), ("1.1", 1, "lost")]
    assert [run.scheduled_for for run in runs] == [None, at(2)]


def test_after_a_redrive_run_ids_repeat_and_each_outcome_ends_the_newest_run() -> None:
    events = [
        *submitted_and_queued(),
        claimed(3, 1),
        failed(4, 1),
        ev(5, "dead_lettered", attempts=1),
        ev(6, "redriven"),
        ev(7, "queued", attempt=1, priority="normal"),
        claimed(8, 1, W2),
        ev(9, "succeeded", attempt=1, run_id="1.1", duration_ms=5),
    ]
    runs = project_runs(events)
    assert summary(runs) == [("1.1", 1, "succeeded"), ("1.1", 1, "failed")]
    assert [(run.seq, run.worker, run.duration_ms) for run in runs] == [(8, W2, 5), (3, W1, 1000)]


# ------------------------------------------------------------------------------ events the domain records
def domain_task(max_retries: int = 2) -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", "retry": {"max_retries": max_retries}})
    return Task.submit(task_id="t-1", owner="alice", now=T0, submitted=cmd.model_dump(mode="json"), **cmd.task_fields())


def test_the_events_the_aggregate_records_project_to_its_attempts_stored_or_not() -> None:
    # Given a task whose first attempt fails, second is lost, third succeeds (driven through the aggregate)
    task = domain_task()
    task.claim(1, W1, at(1), 30)
    task.fail(1, W1, ErrorInfo("ValueError", "boom"), at(3), jitter=0.0)
    retry_at = task.next_run_at
    assert retry_at is not None
    task.promote(retry_at)
    task.claim(2, W2, retry_at, 30)
    task.expire_lease(retry_at + timedelta(seconds=31), jitter=0.0)
    second_retry_at = task.next_run_at
    assert second_retry_at is not None
    task.promote(second_retry_at)
    task.claim(3, W1, second_retry_at, 30)
    task.succeed(3, W1, {"ok": True}, second_retry_at + timedelta(seconds=2))
    # When its events are projected, as recorded and after a round trip through their stored form
    runs = project_runs(task.pending_events)
    stored = project_runs([event_from_dict(event_to_dict(e)) for e in task.pending_events])
    # Then there is one run per attempt, newest first, and storage changes nothing
    assert summary(runs) == [("1.3", 3, "succeeded"), ("1.2", 2, "lost"), ("1.1", 1, "failed")]
    assert [run.duration_ms for run in runs] == [2000, 31000, 2000]
    assert [run.scheduled_for for run in runs] == [second_retry_at, retry_at, None]
    assert runs[1].error is not None
    assert runs[1].error.type == "LeaseExpired"
    assert [run_to_dict(run) for run in stored] == [run_to_dict(run) for run in runs]


# ------------------------------------------------------------------------------------------------ pages
def many_runs(count: int) -> list[Run]:
    events = []
    for attempt in range(1, count + 1):
        events += [claimed(2 * attempt, attempt), failed(2 * attempt + 1, attempt)]
    return project_runs(events)


@pytest.mark.parametrize(("count", "limit"), [(0, 3), (1, 1), (5, 2), (6, 3), (6, 6), (6, 200), (7, 1)])
def test_pages_hold_every_run_once_newest_first(count: int, limit: int) -> None:
    runs = many_runs(count)
    seen: list[Run] = []
    before: int | None = None
    pages = 0
    while True:
        page, before = page_of_runs(runs, limit=limit, before_seq=before)
        pages += 1
        assert len(page) <= limit
        seen += page
        if before is None:
            break
    assert seen == runs
    assert [run.attempt for run in seen] == list(range(count, 0, -1))
    assert pages == max(1, -(-count // limit))  # no empty trailing page


def test_a_page_after_the_oldest_run_is_empty() -> None:
    runs = many_runs(3)
    assert page_of_runs(runs, limit=5, before_seq=runs[-1].seq) == ([], None)


def test_a_page_needs_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        page_of_runs(many_runs(1), limit=0)


# ----------------------------------------------------------------------------------------------- JSON
def test_a_run_as_json_has_exactly_the_contract_fields() -> None:
    (run,) = project_runs([ev(1, "scheduled", next_run_at=at(2)), ev(2, "queued"), claimed(3, 1), failed(4, 1)])
    assert run_to_dict(run) == {
        "run_id": "1.1",
        "attempt": 1,
        "status": "failed",
        "scheduled_for": "2026-01-05T08:00:02.000Z",
        "started_at": "2026-01-05T08:00:03.000Z",
        "finished_at": "2026-01-05T08:00:04.000Z",
        "duration_ms": 1000,
        "worker": W1,
        "error": BOOM,
        "log_size": None,
        "log_expires_at": None,
    }


def test_outcomes_carry_the_log_size_and_expiry_into_the_run_even_once_stored() -> None:
    expires = at(3600)
    events = [
        claimed(3, 1),
        failed(4, 1, log_size=120, log_expires_at=expires),
        claimed(6, 2),
        ev(7, "succeeded", attempt=2, run_id="1.2", duration_ms=5, log_size=0, log_expires_at=expires),
        claimed(9, 3),
        ev(10, "cancel_requested", attempt=3),
        ev(11, "cancelled", attempt=3, run_id="1.3", log_size=7, log_expires_at=expires),
    ]
    # Stored events hold the expiry as an RFC 3339 string; the projection reads both forms alike
    for shown in (events, [event_from_dict(event_to_dict(e)) for e in events]):
        runs = project_runs(shown)
        assert [(r.run_id, r.status, r.log_size, r.log_expires_at) for r in runs] == [
            ("1.3", RunStatus.CANCELLED, 7, expires),
            ("1.2", RunStatus.SUCCEEDED, 0, expires),
            ("1.1", RunStatus.FAILED, 120, expires),
        ]
        assert run_to_dict(runs[0])["log_size"] == 7
        assert run_to_dict(runs[0])["log_expires_at"] == "2026-01-05T09:00:00.000Z"


def test_runs_without_a_recorded_log_show_none() -> None:
    # A lost run (the reaper), an outcome from before run logs, and a running one record no log
    runs = project_runs(
        [
            claimed(3, 1),
            ev(4, "lease_expired", attempt=1),
            claimed(6, 2),
            ev(7, "succeeded", attempt=2, run_id="1.2"),
            claimed(9, 3),
        ]
    )
    assert [(r.log_size, r.log_expires_at) for r in runs] == [(None, None)] * 3


def test_a_nonsense_log_size_is_ignored() -> None:
    runs = project_runs([claimed(3, 1), ev(4, "succeeded", attempt=1, run_id="1.1", log_size=True)])
    assert runs[0].log_size is None


def test_find_run_takes_the_newest_run_of_a_repeated_id() -> None:
    # A redrive restarts attempt numbers: run id 1.1 appears twice, the newest (highest claim) wins
    runs = project_runs([claimed(3, 1), failed(4, 1), ev(6, "redriven"), claimed(8, 1)])
    found = find_run(runs, "1.1")
    assert found is not None
    assert found.seq == 8
    assert find_run(runs, "9.9") is None
