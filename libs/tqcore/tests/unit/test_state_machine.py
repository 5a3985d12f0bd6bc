"""The task aggregate's state machine, exhaustively: every state x every transition, then the rules in detail."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tqcore.domain.codec import event_to_dict
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import IllegalTransition, StaleAttempt
from tqcore.domain.model import ErrorInfo, EventType, RetryPolicy, RunStatus, Status
from tqcore.domain.task import Task

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
#: Past every deadline a built task can have (schedule, backoff, lease, expiry), so time never blocks a transition.
LATE = T0 + timedelta(days=1)
WORKER = "host-a:101"
OTHER_WORKER = "host-b:202"
OWNER = "alice"
USER = "bob"
BOOM = ErrorInfo("ValueError", "boom")


# ----------------------------------------------------------------------------------------------- builders
def submit(**body: Any) -> Task:
    """A task accepted the way the gateway accepts one (validated command), expiring one hour after T0."""
    fields = {"type": "echo", "group": "team-a", "expires_at": T0 + timedelta(hours=1), **body}
    cmd = SubmitTask.model_validate(fields)
    return Task.submit(task_id="t-1", owner=OWNER, now=T0, submitted=cmd.model_dump(mode="json"), **cmd.task_fields())


def running(**body: Any) -> Task:
    task = submit(**body)
    task.claim(1, WORKER, T0 + timedelta(seconds=1), 30)
    return task


def running_cancel_requested() -> Task:
    task = running()
    task.request_cancel(USER, T0 + timedelta(seconds=2))
    return task


def retrying() -> Task:
    task = running()
    task.fail(1, WORKER, BOOM, T0 + timedelta(seconds=2), jitter=0.0)
    return task


def succeeded() -> Task:
    task = running()
    task.succeed(1, WORKER, {"ok": 1}, T0 + timedelta(seconds=2))
    return task


def failed() -> Task:
    task = running(retry={"max_retries": 0})
    task.fail(1, WORKER, BOOM, T0 + timedelta(seconds=2), jitter=0.0)
    return task


def cancelled() -> Task:
    task = submit()
    task.request_cancel(USER, T0 + timedelta(seconds=2))
    return task


def expired() -> Task:
    task = submit()
    task.expire(T0 + timedelta(hours=2))
    return task


def paused() -> Task:
    task = submit(schedule={"every_s": 60, "start_at": T0 + timedelta(minutes=10)})
    task.pause(USER, T0 + timedelta(seconds=2))
    return task


#: A task in every status (and the one sub-state that changes behaviour: running with a cancel requested).
BUILDERS: dict[str, Callable[[], Task]] = {
    "scheduled": lambda: submit(schedule={"at": T0 + timedelta(minutes=10)}),
    "queued": submit,
    "running": running,
    "running_cancel_requested": running_cancel_requested,
    "retrying": retrying,
    "succeeded": succeeded,
    "failed": failed,
    "cancelled": cancelled,
    "expired": expired,
    "paused": paused,
}

#: Every transition, called as its legitimate caller would (the attempt and worker that own the task).
TRANSITIONS: dict[str, Callable[[Task], None]] = {
    "promote": lambda t: t.promote(LATE),
    "resend": lambda t: t.resend(LATE),
    "claim": lambda t: t.claim(t.attempts + 1, OTHER_WORKER, LATE, 30),
    "succeed": lambda t: t.succeed(t.attempts, WORKER, {"ok": True}, LATE),
    "fail": lambda t: t.fail(t.attempts, WORKER, BOOM, LATE, jitter=0.0),
    "expire_lease": lambda t: t.expire_lease(LATE, jitter=0.0),
    "request_cancel": lambda t: t.request_cancel(USER, LATE),
    "acknowledge_cancel": lambda t: t.acknowledge_cancel(t.attempts, WORKER, LATE),
    "expire": lambda t: t.expire(LATE),
    "update": lambda t: t.update({"description": "changed"}, USER, LATE),
    "redrive": lambda t: t.redrive(USER, LATE),
    "pause": lambda t: t.pause(USER, LATE),
    "resume": lambda t: t.resume(USER, LATE),
}

#: Who each transition's events are recorded as (contract section 4: users by name, services by role).
ACTORS = {
    "promote": "scheduler",
    "resend": "reaper",
    "claim": f"executor:{OTHER_WORKER}",
    "succeed": f"executor:{WORKER}",
    "fail": f"executor:{WORKER}",
    "expire_lease": "reaper",
    "request_cancel": USER,
    "acknowledge_cancel": f"executor:{WORKER}",
    "expire": "scheduler",
    "update": USER,
    "redrive": USER,
    "pause": USER,
    "resume": USER,
}

S, Q, R, RT = Status.SCHEDULED, Status.QUEUED, Status.RUNNING, Status.RETRYING
OK, FAIL, CXL, EXP, P = Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.EXPIRED, Status.PAUSED
ILLEGAL, STALE = IllegalTransition, StaleAttempt
Outcome = tuple[Status, list[str]] | type[IllegalTransition]
ALL_ILLEGAL_TERMINAL: dict[str, Outcome] = {
    "promote": ILLEGAL,
    "resend": ILLEGAL,
    "claim": ILLEGAL,
    "succeed": STALE,
    "fail": STALE,
    "expire_lease": ILLEGAL,
    "request_cancel": ILLEGAL,
    "acknowledge_cancel": STALE,
    "expire": ILLEGAL,
    "update": ILLEGAL,
    "redrive": ILLEGAL,
    "pause": ILLEGAL,
    "resume": ILLEGAL,
}

#: state -> transition -> (resulting status, event types recorded) or the exact exception raised.
EXPECTED: dict[str, dict[str, Outcome]] = {
    "scheduled": {
        "promote": (Q, ["queued"]),
        "resend": ILLEGAL,
        "claim": ILLEGAL,
        "succeed": STALE,
        "fail": STALE,
        "expire_lease": ILLEGAL,
        "request_cancel": (CXL, ["cancelled"]),
        "acknowledge_cancel": STALE,
        "expire": (EXP, ["expired"]),
        "update": (S, ["updated"]),
        "redrive": ILLEGAL,
        "pause": ILLEGAL,  # a one-shot task
        "resume": ILLEGAL,
    },
    "queued": {
        "promote": ILLEGAL,
        "resend": (Q, ["queued"]),
        "claim": (R, ["claimed"]),
        "succeed": STALE,
        "fail": STALE,
        "expire_lease": ILLEGAL,
        "request_cancel": (CXL, ["cancelled"]),
        "acknowledge_cancel": STALE,
        "expire": (EXP, ["expired"]),
        "update": (Q, ["updated"]),
        "redrive": ILLEGAL,
        "pause": ILLEGAL,  # a one-shot task
        "resume": ILLEGAL,
    },
    "running": {
        "promote": ILLEGAL,
        "resend": ILLEGAL,
        "claim": ILLEGAL,
        "succeed": (OK, ["succeeded"]),
        "fail": (RT, ["failed", "retry_scheduled"]),
        "expire_lease": (RT, ["lease_expired", "failed", "retry_scheduled"]),
        "request_cancel": (R, ["cancel_requested"]),
        "acknowledge_cancel": ILLEGAL,  # nobody asked it to stop
        "expire": ILLEGAL,  # it has started
        "update": (R, ["updated"]),
        "redrive": ILLEGAL,
        "pause": ILLEGAL,  # a one-shot task
        "resume": ILLEGAL,
    },
    "running_cancel_requested": {
        "promote": ILLEGAL,
        "resend": ILLEGAL,
        "claim": ILLEGAL,
        "succeed": (OK, ["succeeded"]),  # it finished before it saw the cancel
        "fail": (CXL, ["failed", "cancelled"]),  # no retry for a task being cancelled
        "expire_lease": (CXL, ["lease_expired", "failed", "cancelled"]),
        "request_cancel": (R, []),  # asking twice changes nothing
        "acknowledge_cancel": (CXL, ["cancelled"]),
        "expire": ILLEGAL,
        "update": (R, ["updated"]),
        "redrive": ILLEGAL,
        "pause": ILLEGAL,  # a one-shot task
        "resume": ILLEGAL,
    },
    "retrying": {
        "promote": (Q, ["queued"]),
        "resend": ILLEGAL,
        "claim": ILLEGAL,
        "succeed": STALE,
        "fail": STALE,
        "expire_lease": ILLEGAL,
        "request_cancel": (CXL, ["cancelled"]),
        "acknowledge_cancel": STALE,
        "expire": (EXP, ["expired"]),
        "update": (RT, ["updated"]),
        "redrive": ILLEGAL,
        "pause": ILLEGAL,  # a one-shot task
        "resume": ILLEGAL,
    },
    "succeeded": ALL_ILLEGAL_TERMINAL,
    "failed": {**ALL_ILLEGAL_TERMINAL, "redrive": (Q, ["redriven", "queued"])},
    # Contract section 4: DELETE 409s only after succeeded/failed, so cancelling twice is an idempotent no-op.
    "cancelled": {**ALL_ILLEGAL_TERMINAL, "request_cancel": (CXL, [])},
    "expired": ALL_ILLEGAL_TERMINAL,
    # A repeating task paused while it waited for its next slot (contract section 8).
    "paused": {
        **ALL_ILLEGAL_TERMINAL,
        "request_cancel": (CXL, ["cancelled"]),
        "update": (P, ["updated"]),
        "pause": (P, []),  # pausing twice changes nothing
        "resume": (S, ["resumed", "run_skipped", "scheduled"]),
    },
}


def _cases() -> list[Any]:
    cases = []
    for state in BUILDERS:
        for method in TRANSITIONS:
            cases.append(pytest.param(state, method, id=f"{state}-{method}"))
    return cases


def assert_consistent(task: Task) -> None:
    """Invariants every reachable task satisfies."""
    events = task.pending_events
    assert task.version == len(events)
    assert [e.seq for e in events] == list(range(1, task.version + 1))
    assert events[0].type is EventType.SUBMITTED
    assert task.updated_at == events[-1].at
    running_now = task.status is Status.RUNNING
    assert (task.worker is not None) == running_now
    assert (task.lease_expires_at is not None) == running_now
    assert (task.finished_at is not None) == task.status.is_terminal
    assert (task.next_run_at is not None) == (task.status in (Status.SCHEDULED, Status.RETRYING))
    assert task.retries == max(task.attempts - 1, 0)


# ----------------------------------------------------------------------------------- the exhaustive table
def test_builders_cover_every_status() -> None:
    assert {build().status for build in BUILDERS.values()} == set(Status)
    assert BUILDERS["running_cancel_requested"]().cancel_requested


def test_the_table_covers_every_state_and_transition() -> None:
    assert set(EXPECTED) == set(BUILDERS)
    for state, row in EXPECTED.items():
        assert set(row) == set(TRANSITIONS), state


@pytest.mark.parametrize("state", list(BUILDERS))
def test_every_built_state_is_consistent(state: str) -> None:
    assert_consistent(BUILDERS[state]())


@pytest.mark.parametrize(("state", "method"), _cases())
def test_transition_table(state: str, method: str) -> None:
    # Given a task in the state, its history so far
    task = BUILDERS[state]()
    before = copy.deepcopy(task)
    seen = len(task.pending_events)
    expected = EXPECTED[state][method]
    # When the transition is applied
    if isinstance(expected, tuple):
        TRANSITIONS[method](task)
        # Then it lands in the expected status, having recorded exactly the expected events
        status, event_types = expected
        new = task.pending_events[seen:]
        assert task.status is status
        assert [e.type.value for e in new] == event_types
        assert {e.actor for e in new} <= {ACTORS[method]}
        assert all(e.at == LATE for e in new)
        assert task.version == before.version + len(new)
        if not new:
            assert task == before
        assert_consistent(task)
    else:
        # Then it is refused with exactly that error, and the task is untouched
        with pytest.raises(IllegalTransition) as refused:
            TRANSITIONS[method](task)
        assert type(refused.value) is expected
        assert task == before
        assert len(task.pending_events) == seen


# ------------------------------------------------------------------------------------------- submission
def test_submit_without_schedule_is_queued_by_its_owner() -> None:
    task = submit(payload={"x": 1})
    assert task.status is Status.QUEUED
    assert task.queued_at == T0
    assert [(e.seq, e.type.value, e.actor) for e in task.pending_events] == [
        (1, "submitted", OWNER),
        (2, "queued", OWNER),
    ]
    assert task.pending_events[0].data["payload"] == {"x": 1}
    assert task.pending_events[1].data == {"attempt": 1, "priority": "normal"}


def test_submit_at_a_future_time_is_scheduled_for_it() -> None:
    at = T0 + timedelta(minutes=10)
    task = submit(schedule={"at": at})
    assert (task.status, task.next_run_at, task.queued_at) == (Status.SCHEDULED, at, None)
    assert [e.type.value for e in task.pending_events] == ["submitted", "scheduled"]


def test_submit_at_a_past_time_runs_at_once() -> None:
    task = submit(schedule={"at": T0 - timedelta(minutes=1)})
    assert task.status is Status.QUEUED
    assert task.next_run_at is None


def test_repeating_schedule_waits_for_its_start() -> None:
    later = T0 + timedelta(hours=1)
    assert submit(schedule={"every_s": 60, "start_at": later}).next_run_at == later
    assert submit(schedule={"every_s": 60}).status is Status.QUEUED


def test_promote_before_the_time_is_refused() -> None:
    task = submit(schedule={"at": T0 + timedelta(minutes=10)})
    before = copy.deepcopy(task)
    with pytest.raises(IllegalTransition):
        task.promote(T0 + timedelta(minutes=9, seconds=59))
    assert task == before
    task.promote(T0 + timedelta(minutes=10))
    assert task.status is Status.QUEUED
    assert task.queued_at == T0 + timedelta(minutes=10)


# --------------------------------------------------------------------------------------- attempt fencing
def test_claim_of_any_attempt_but_the_next_is_stale() -> None:
    task = submit()
    before = copy.deepcopy(task)
    for attempt in (0, 2, 3):
        with pytest.raises(StaleAttempt):
            task.claim(attempt, WORKER, T0, 30)
    assert task == before
    assert len(task.pending_events) == 2


def test_claim_takes_the_lease() -> None:
    task = submit()
    task.claim(1, WORKER, T0 + timedelta(seconds=5), 45)
    assert (task.status, task.attempts, task.worker) == (Status.RUNNING, 1, WORKER)
    assert task.started_at == T0 + timedelta(seconds=5)
    assert task.lease_expires_at == T0 + timedelta(seconds=50)
    event = task.pending_events[-1]
    assert (event.type, event.actor) == (EventType.CLAIMED, f"executor:{WORKER}")
    assert event.data == {"attempt": 1, "run_id": "1.1", "worker": WORKER}


OWNER_CALLS: dict[str, Callable[[Task, int, str], None]] = {
    "succeed": lambda t, attempt, worker: t.succeed(attempt, worker, None, LATE),
    "fail": lambda t, attempt, worker: t.fail(attempt, worker, BOOM, LATE, jitter=0.0),
    "acknowledge_cancel": lambda t, attempt, worker: t.acknowledge_cancel(attempt, worker, LATE),
}


@pytest.mark.parametrize("method", list(OWNER_CALLS))
@pytest.mark.parametrize(("attempt", "worker"), [(2, WORKER), (0, WORKER), (1, OTHER_WORKER)])
def test_outcome_from_a_wrong_attempt_or_worker_is_stale(method: str, attempt: int, worker: str) -> None:
    task = running_cancel_requested()  # so acknowledge_cancel would be legal for the owner
    before = copy.deepcopy(task)
    with pytest.raises(StaleAttempt):
        OWNER_CALLS[method](task, attempt, worker)
    assert task == before
    OWNER_CALLS[method](task, 1, WORKER)  # the owner still can
    assert task.status.is_terminal


def test_a_zombie_of_an_earlier_attempt_is_fenced_off_after_a_retry() -> None:
    # Given attempt 1 failed and attempt 2 runs on the same worker
    task = retrying()
    task.promote(LATE)
    task.claim(2, WORKER, LATE, 30)
    # When attempt 1 reports success late
    with pytest.raises(StaleAttempt):
        task.succeed(1, WORKER, "late", LATE)
    # Then attempt 2 still owns the task
    assert (task.status, task.attempts, task.result) == (Status.RUNNING, 2, None)


def test_succeed_records_the_result_and_clears_the_error() -> None:
    task = retrying()
    task.promote(T0 + timedelta(seconds=10))
    task.claim(2, WORKER, T0 + timedelta(seconds=10), 30)
    task.succeed(2, WORKER, {"answer": 42}, T0 + timedelta(seconds=11, milliseconds=500))
    assert (task.status, task.result, task.last_error) == (Status.SUCCEEDED, {"answer": 42}, None)
    assert task.finished_at == T0 + timedelta(seconds=11, milliseconds=500)
    assert task.pending_events[-1].data == {"attempt": 2, "run_id": "1.2", "duration_ms": 1500}


# ----------------------------------------------------------------------------------- retries and backoff
@pytest.mark.parametrize("max_retries", [0, 1, 2, 5])
def test_a_task_runs_at_most_one_plus_max_retries_attempts(max_retries: int) -> None:
    task = submit(retry={"max_retries": max_retries})
    now = T0
    for attempt in range(1, max_retries + 2):
        task.claim(attempt, WORKER, now, 30)
        now += timedelta(seconds=1)
        task.fail(attempt, WORKER, BOOM, now, jitter=0.0)
        if attempt <= max_retries:
            assert task.status is Status.RETRYING, attempt
            assert task.next_run_at is not None
            now = task.next_run_at
            task.promote(now)
    assert task.status is Status.FAILED
    assert (task.attempts, task.retries) == (max_retries + 1, max_retries)
    assert task.finished_at == now
    assert task.last_error == BOOM
    last = task.pending_events[-1]
    assert (last.type, last.data, last.actor) == (
        EventType.DEAD_LETTERED,
        {"attempts": max_retries + 1, "run_id": f"1.{max_retries + 1}"},
        "executor:" + WORKER,
    )
    assert_consistent(task)


def test_first_failure_dead_letters_without_retries() -> None:
    task = failed()
    assert [e.type.value for e in task.pending_events[-2:]] == ["failed", "dead_lettered"]
    assert task.next_run_at is None


def test_retry_waits_the_capped_exponential_backoff() -> None:
    # base 2 s, cap 5 s: 2, 4, 5, 5 with no jitter
    task = submit(retry={"max_retries": 5, "backoff_base_s": 2, "backoff_max_s": 5})
    now = T0
    for attempt, delay in enumerate([2.0, 4.0, 5.0, 5.0], start=1):
        task.claim(attempt, WORKER, now, 30)
        now += timedelta(seconds=3)
        task.fail(attempt, WORKER, BOOM, now, jitter=0.0)
        assert task.next_run_at == now + timedelta(seconds=delay)
        event = task.pending_events[-1]
        assert event.type is EventType.RETRY_SCHEDULED
        assert event.data == {"next_attempt": attempt + 1, "delay_s": delay, "next_run_at": task.next_run_at}
        now = task.next_run_at
        task.promote(now)


@pytest.mark.parametrize(("jitter", "delay_s"), [(0.0, 8.0), (0.5, 6.0), (0.999, 4.004)])
def test_jitter_shortens_the_backoff_by_at_most_half(jitter: float, delay_s: float) -> None:
    task = running(retry={"backoff_base_s": 8})
    task.fail(1, WORKER, BOOM, LATE, jitter=jitter)
    assert task.next_run_at is not None
    assert (task.next_run_at - LATE).total_seconds() == pytest.approx(delay_s)


def test_fail_records_how_the_attempt_ended() -> None:
    task = running()
    error = ErrorInfo("Timeout", "ran past 300 s")
    task.fail(1, WORKER, error, T0 + timedelta(seconds=4), jitter=0.0, run_status=RunStatus.TIMED_OUT)
    failed_event = task.pending_events[-2]
    assert failed_event.type is EventType.FAILED
    assert failed_event.data == {
        "attempt": 1,
        "run_id": "1.1",
        "run_status": "timed_out",
        "error": {"type": "Timeout", "message": "ran past 300 s"},
        "retryable": True,
        "duration_ms": 3000,
    }
    assert task.last_error == error


def test_a_permanent_failure_dead_letters_at_once_with_retries_left() -> None:
    # Given a running task with its whole retry budget left
    task = running(retry={"max_retries": 5})
    # When its attempt fails permanently (the handler raised Permanent)
    task.fail(1, WORKER, ErrorInfo("Permanent", "bad input"), T0 + timedelta(seconds=2), jitter=0.0, permanent=True)
    # Then the task is failed after one attempt, its failed event says no retry follows, and it is dead-lettered
    assert (task.status, task.attempts, task.next_run_at) == (Status.FAILED, 1, None)
    failed_event, dead = task.pending_events[-2:]
    assert (failed_event.type, failed_event.data["retryable"]) == (EventType.FAILED, False)
    assert (dead.type, dead.data) == (EventType.DEAD_LETTERED, {"attempts": 1, "run_id": "1.1", "permanent": True})
    assert_consistent(task)


def test_retryable_says_whether_another_attempt_follows() -> None:
    retried = running(retry={"max_retries": 1})
    retried.fail(1, WORKER, BOOM, T0 + timedelta(seconds=2), jitter=0.0)
    assert [e.data["retryable"] for e in retried.pending_events if e.type is EventType.FAILED] == [True]
    exhausted = failed()
    assert [e.data["retryable"] for e in exhausted.pending_events if e.type is EventType.FAILED] == [False]


def test_a_permanent_failure_of_a_cancelled_task_ends_it_cancelled() -> None:
    task = running_cancel_requested()
    task.fail(1, WORKER, BOOM, LATE, jitter=0.0, permanent=True)
    assert task.status is Status.CANCELLED


def test_expired_lease_loses_the_attempt_and_retries() -> None:
    task = running()
    assert task.lease_expires_at == T0 + timedelta(seconds=31)
    before = copy.deepcopy(task)
    with pytest.raises(IllegalTransition):
        task.expire_lease(T0 + timedelta(seconds=30), jitter=0.0)
    assert task == before
    task.expire_lease(T0 + timedelta(seconds=31), jitter=0.0)
    assert task.status is Status.RETRYING
    lease_event, failed_event = task.pending_events[-3:-1]
    assert lease_event.data == {"attempt": 1, "worker": WORKER}
    assert failed_event.data["run_status"] == "lost"
    assert task.last_error is not None
    assert task.last_error.type == "LeaseExpired"
    assert task.next_run_at == T0 + timedelta(seconds=33)


def test_expired_lease_on_the_last_attempt_dead_letters() -> None:
    task = running(retry={"max_retries": 0})
    task.expire_lease(LATE, jitter=0.0)
    assert task.status is Status.FAILED
    assert [e.type.value for e in task.pending_events[-3:]] == ["lease_expired", "failed", "dead_lettered"]


# ------------------------------------------------------------------------------------------ cancellation
def test_cancel_of_a_running_task_only_asks_the_attempt_to_stop() -> None:
    task = running()
    task.request_cancel(USER, T0 + timedelta(seconds=2))
    assert (task.status, task.cancel_requested, task.worker) == (Status.RUNNING, True, WORKER)
    event = task.pending_events[-1]
    assert (event.type, event.actor, event.data) == (EventType.CANCEL_REQUESTED, USER, {"attempt": 1})


def test_acknowledged_cancel_ends_the_task_cancelled() -> None:
    task = running_cancel_requested()
    task.acknowledge_cancel(1, WORKER, T0 + timedelta(seconds=3))
    assert (task.status, task.worker, task.lease_expires_at) == (Status.CANCELLED, None, None)
    assert task.finished_at == T0 + timedelta(seconds=3)
    event = task.pending_events[-1]
    assert (event.actor, event.data) == (f"executor:{WORKER}", {"attempt": 1, "run_id": "1.1", "duration_ms": 2000})


def test_a_failed_attempt_of_a_cancelled_task_is_not_retried() -> None:
    task = running_cancel_requested()
    task.fail(1, WORKER, BOOM, LATE, jitter=0.0)
    assert task.status is Status.CANCELLED
    assert task.next_run_at is None
    assert EventType.RETRY_SCHEDULED not in {e.type for e in task.pending_events}


@pytest.mark.parametrize("state", ["scheduled", "queued", "retrying"])
def test_cancel_of_a_waiting_task_is_immediate(state: str) -> None:
    task = BUILDERS[state]()
    task.request_cancel(USER, LATE)
    assert (task.status, task.next_run_at, task.finished_at) == (Status.CANCELLED, None, LATE)
    assert (task.pending_events[-1].actor, task.pending_events[-1].data) == (USER, {})


# --------------------------------------------------------------------------------------------- expiry
@pytest.mark.parametrize("state", ["scheduled", "queued", "retrying"])
def test_expire_only_after_expires_at(state: str) -> None:
    task = BUILDERS[state]()
    before = copy.deepcopy(task)
    with pytest.raises(IllegalTransition):
        task.expire(T0 + timedelta(minutes=59))
    assert task == before
    task.expire(T0 + timedelta(hours=1))
    assert task.status is Status.EXPIRED
    event = task.pending_events[-1]
    assert (event.actor, event.data) == ("scheduler", {"expires_at": T0 + timedelta(hours=1)})
    assert event_to_dict(event)["data"]["expires_at"].endswith("Z")


def test_a_task_without_expires_at_never_expires() -> None:
    task = submit(expires_at=None)
    with pytest.raises(IllegalTransition):
        task.expire(LATE + timedelta(days=365))
    assert task.status is Status.QUEUED


# ------------------------------------------------------------------------------------------ resends
def test_resend_is_a_new_version_of_the_same_enqueue() -> None:
    task = submit()
    task.resend(T0 + timedelta(seconds=30))
    task.resend(T0 + timedelta(seconds=90))
    assert (task.status, task.resends, task.version, task.queued_at) == (Status.QUEUED, 2, 4, T0)
    assert [e.data for e in task.pending_events[-2:]] == [{"attempt": 1, "resend": 1}, {"attempt": 1, "resend": 2}]
    # the next claim is still attempt 1
    task.claim(1, WORKER, T0 + timedelta(seconds=91), 30)
    assert task.attempts == 1


def test_a_new_enqueue_resets_the_resend_count() -> None:
    task = submit(retry={"max_retries": 1})
    task.resend(T0 + timedelta(seconds=30))
    task.claim(1, WORKER, T0 + timedelta(seconds=31), 30)
    task.fail(1, WORKER, BOOM, T0 + timedelta(seconds=32), jitter=0.0)
    task.promote(LATE)
    assert (task.resends, task.queued_at) == (0, LATE)


# ----------------------------------------------------------------------------------------------- redrive
def test_redrive_gives_a_fresh_retry_budget() -> None:
    # Given a task dead-lettered after its only retry
    task = running(retry={"max_retries": 1})
    task.fail(1, WORKER, BOOM, T0 + timedelta(seconds=2), jitter=0.0)
    task.promote(LATE)
    task.claim(2, WORKER, LATE, 30)
    task.fail(2, WORKER, BOOM, LATE, jitter=0.0)
    assert task.status is Status.FAILED
    # When it is redriven
    later = LATE + timedelta(hours=1)
    task.redrive(USER, later)
    # Then it is queued for attempt 1 again, with the whole budget
    assert (task.status, task.attempts, task.retries, task.finished_at) == (Status.QUEUED, 0, 0, None)
    assert task.queued_at == later
    assert [(e.type.value, e.actor) for e in task.pending_events[-2:]] == [("redriven", USER), ("queued", USER)]
    assert task.pending_events[-1].data["attempt"] == 1
    with pytest.raises(StaleAttempt):
        task.claim(3, WORKER, later, 30)
    task.claim(1, WORKER, later, 30)
    task.fail(1, WORKER, BOOM, later, jitter=0.0)
    assert task.status is Status.RETRYING
    assert_consistent(task)


# ------------------------------------------------------------------------------------------------ update
def test_update_records_the_changed_fields_only() -> None:
    task = submit(priority="low")
    task.update({"priority": "low", "description": "d", "retry": RetryPolicy(max_retries=1)}, USER, LATE)
    event = task.pending_events[-1]
    assert (event.type, event.actor, event.data) == (EventType.UPDATED, USER, {"fields": ["description", "retry"]})
    assert (task.description, task.retry.max_retries) == ("d", 1)


def test_update_without_a_change_records_nothing() -> None:
    task = submit(description="same")
    before = copy.deepcopy(task)
    task.update({"description": "same"}, USER, LATE)
    assert task == before
    assert len(task.pending_events) == 2


@pytest.mark.parametrize("field", ["status", "attempts", "owner", "group", "version", "worker", "bogus"])
def test_update_of_a_field_users_may_not_change_is_refused(field: str) -> None:
    task = submit()
    before = copy.deepcopy(task)
    with pytest.raises(IllegalTransition):
        task.update({field: "x", "description": "ok"}, USER, LATE)
    assert task == before


# -------------------------------------------------------------------------------- repeating tasks (sec. 3)
def test_a_repeating_task_is_scheduled_again_after_a_successful_run() -> None:
    task = running(schedule={"every_s": 60})
    task.succeed(1, WORKER, "done", T0 + timedelta(seconds=2))
    assert task.status is Status.SCHEDULED
    assert task.next_run_at is not None
    assert task.next_run_at > T0 + timedelta(seconds=2)
    assert task.run_count == 1


def test_a_repeating_task_outlives_a_run_that_exhausted_its_retries() -> None:
    task = running(schedule={"every_s": 60}, retry={"max_retries": 0})
    task.fail(1, WORKER, BOOM, T0 + timedelta(seconds=2), jitter=0.0)
    assert task.status is Status.SCHEDULED


# --------------------------------------------------------------------------------- random walks (property)
@settings(database=None, deadline=None, max_examples=200)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(sorted(TRANSITIONS)), st.integers(min_value=0, max_value=120)), max_size=25
    ),
    max_retries=st.integers(min_value=0, max_value=3),
)
def test_any_sequence_of_transitions_keeps_the_task_consistent(steps: list[tuple[str, int]], max_retries: int) -> None:
    task = submit(retry={"max_retries": max_retries}, expires_at=None)
    now = T0
    for method, advance_s in steps:
        now += timedelta(seconds=advance_s)
        before = copy.deepcopy(task)
        seen = len(task.pending_events)
        try:
            walk_step(task, method, now)
        except IllegalTransition:
            assert task == before
            assert len(task.pending_events) == seen
        assert_consistent(task)
        assert task.attempts <= max_retries + 1


def walk_step(task: Task, method: str, now: datetime) -> None:
    """One transition at ``now`` (time-gated ones), else as in the table."""
    if method == "promote":
        task.promote(now)
    elif method == "resend":
        task.resend(now)
    elif method == "claim":
        task.claim(task.attempts + 1, WORKER, now, 30)
    elif method == "expire_lease":
        task.expire_lease(now, jitter=0.5)
    else:
        TRANSITIONS[method](task)
