"""Pausing and resuming a repeating task over HTTP, on in-memory fakes: status codes, who may, and that the
scheduler's pass over the same store runs no slot while the task is paused."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import falcon.testing
import pytest

from tq_gateway.testing import client_over_fakes
from tqcore.dispatch import Dispatch
from tqcore.domain.model import Status
from tqcore.domain.task import Task
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.scheduling import Promoter, promote_due
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
BOB = {"Authorization": "Bearer dev-bob"}
WORKER = "host-a:1"
EVERY_10_S = {"type": "echo", "group": "team-a", "schedule": {"every_s": 10}}


class Api:
    """A gateway and a scheduler pass over the same fakes."""

    def __init__(self) -> None:
        self.store = InMemoryTaskStore()
        self.queue = RecordingQueue()
        self.clock = FixedClock()
        self.start = self.clock.now()
        registry = InMemoryRegistry(["echo"])
        self.http = client_over_fakes(store=self.store, queue=self.queue, registry=registry, clock=self.clock)

    def submit(self, body: dict[str, Any]) -> str:
        response = self.http.simulate_post("/v1/tasks", headers=ALICE, json=body)
        assert response.status_code == 201, response.text
        return str(response.json["id"])

    def post(self, path: str, headers: dict[str, str] = ALICE) -> falcon.testing.Result:
        return self.http.simulate_post(path, headers=headers)

    def events(self, task_id: str) -> list[dict[str, Any]]:
        return list(self.http.simulate_get(f"/v1/tasks/{task_id}/events", headers=ALICE).json["items"])

    def executor(self) -> Attempts:
        """An executor's claims and outcomes over the same store."""
        return Attempts(self.store, self.queue, self.clock, worker=WORKER, lease_s=30)

    def scheduler_pass(self, at_s: float) -> int:
        """Move the clock to ``at_s`` seconds after the start and let the scheduler act: how many runs it queued."""
        self.clock.advance(at_s - (self.clock.now() - self.start).total_seconds())
        return promote_due(self.store, self.queue, self.clock, since=self.start - timedelta(minutes=1))


@pytest.fixture
def api() -> Api:
    return Api()


def waiting_task(api: Api) -> str:
    """An every-10-s task whose first run (at the start) ended: it waits for its slot at +10 s."""
    task_id = api.submit(EVERY_10_S)
    task = mutate(api.store, api.store.get(task_id), lambda t: t.claim(1, WORKER, api.clock.now(), 30))
    mutate(api.store, task, lambda t: t.succeed(1, WORKER, None, api.clock.now()))
    return task_id


def test_a_paused_task_runs_no_slot_and_resumed_goes_on_with_the_next(api: Api) -> None:
    # Given an every-10-s task waiting for its slot at +10 s
    task_id = waiting_task(api)
    # When alice pauses it
    response = api.post(f"/v1/tasks/{task_id}/pause")
    # Then it is paused, its version the ETag, and it has no next run
    assert response.status_code == 200, response.text
    assert (response.json["status"], response.json["next_run_at"]) == ("paused", None)
    assert response.json["paused_at"] == "2026-01-05T08:00:00.000Z"
    assert response.headers["etag"] == f'"{response.json["version"]}"'
    # And the scheduler queues nothing, slot after slot
    assert [api.scheduler_pass(at_s) for at_s in (10, 20, 30, 35)] == [0, 0, 0, 0]
    # When alice resumes it at +35 s
    response = api.post(f"/v1/tasks/{task_id}/resume")
    # Then it waits for +40 s, and the slots at +10, +20 and +30 s are recorded as skipped
    assert response.status_code == 200, response.text
    assert (response.json["status"], response.json["next_run_at"], response.json["paused_at"]) == (
        "scheduled",
        "2026-01-05T08:00:40.000Z",
        None,
    )
    events = api.events(task_id)
    assert [(e["type"], e["actor"]) for e in events[-4:]] == [
        ("paused", "alice"),
        ("resumed", "alice"),
        ("run_skipped", "alice"),
        ("scheduled", "alice"),
    ]
    assert events[-2]["data"] == {
        "reason": "paused",
        "count": 3,
        "first": "2026-01-05T08:00:10.000Z",
        "last": "2026-01-05T08:00:30.000Z",
    }
    # And the scheduler runs its next slot
    assert api.scheduler_pass(41) == 1


def test_pausing_a_task_while_an_attempt_runs_answers_it_running_with_paused_at(api: Api) -> None:
    task_id = api.submit(EVERY_10_S)  # its first run is queued at once
    mutate(api.store, api.store.get(task_id), lambda t: t.claim(1, WORKER, api.clock.now(), 30))
    response = api.post(f"/v1/tasks/{task_id}/pause")
    assert response.status_code == 200, response.text
    assert (response.json["status"], response.json["paused_at"]) == ("running", "2026-01-05T08:00:00.000Z")


def test_pausing_a_run_not_yet_claimed_answers_the_task_paused_and_its_message_starts_nothing(api: Api) -> None:
    task_id = api.submit(EVERY_10_S)  # its first run is queued at once, its message sent
    (message,) = api.queue.sent
    response = api.post(f"/v1/tasks/{task_id}/pause")
    assert response.status_code == 200, response.text
    assert (response.json["status"], response.json["next_run_at"]) == ("paused", None)
    assert api.executor().claim(Dispatch.of(message)) is None
    assert api.store.get(task_id).status is Status.PAUSED


def test_a_run_staged_ahead_of_its_slot_and_paused_before_it_never_starts(api: Api) -> None:
    # Given an every-10-s task waiting for its slot at +10 s, and a scheduler staging runs due within 5 s
    task_id = waiting_task(api)
    promoter = Promoter(api.store, api.queue, api.clock, starting_deadline_s=3600, stage_s=5)
    try:
        # When the scheduler's pass at +6 s stages the run of +10 s (committed queued, sent at +10 s)
        api.clock.advance(6)
        assert promoter.run(api.start).queued == 1
        assert (api.store.get(task_id).status, promoter.staged()) == (Status.QUEUED, 1)
        # And alice pauses the task at +7 s
        api.clock.advance(1)
        response = api.post(f"/v1/tasks/{task_id}/pause")
        # Then it is paused at once, the staged slot its next slot again
        assert response.status_code == 200, response.text
        assert (response.json["status"], response.json["next_run_at"]) == ("paused", None)
        paused = api.events(task_id)[-1]
        assert paused["data"]["withdrawn"] == {
            "attempt": 1,
            "run_id": "2.1",
            "scheduled_for": "2026-01-05T08:00:10.000Z",
        }
        # And the staged message, sent at +10 s all the same, starts nothing
        api.clock.advance(3)
        stale = Dispatch.of(wait_for_send(api, promoter))
        assert api.executor().claim(stale) is None
        assert api.store.get(task_id).status is Status.PAUSED
        # When alice resumes it at +12 s and the scheduler stages its slot at +20 s
        api.clock.advance(2)
        assert api.post(f"/v1/tasks/{task_id}/resume").json["next_run_at"] == "2026-01-05T08:00:20.000Z"
        api.clock.advance(4)
        assert promoter.run(api.start).queued == 1
        # Then the withdrawn slot's message cannot start that run (same run, same attempt, another enqueue)
        assert api.executor().claim(stale) is None
        # And only the new message does, once sent at +20 s
        api.clock.advance(4)
        fresh = Dispatch.of(wait_for_send(api, promoter))
        claimed = api.executor().claim(fresh)
        assert claimed is not None
        assert (claimed.run_slot, claimed.run_no) == (api.start + timedelta(seconds=20), 2)
    finally:
        api.clock.advance(60)  # the sender thread sends what is staged at its time, then stops
        promoter.close()


def wait_for_send(api: Api, promoter: Promoter) -> Task:
    """The message the scheduler's staged-sender thread sends once its time has come."""
    deadline = time.monotonic() + 5
    while promoter.staged() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert promoter.staged() == 0, "the staged run was not sent"
    return api.queue.sent[-1]


def test_pausing_twice_answers_the_paused_task_unchanged(api: Api) -> None:
    task_id = waiting_task(api)
    first = api.post(f"/v1/tasks/{task_id}/pause").json
    again = api.post(f"/v1/tasks/{task_id}/pause")
    assert (again.status_code, again.json["version"], again.json["status"]) == (200, first["version"], "paused")


@pytest.mark.parametrize("body", [{}, {"schedule": {"at": "2026-01-05T09:00:00Z"}}], ids=["run now", "at a time"])
def test_pausing_a_task_that_does_not_repeat_is_a_409(api: Api, body: dict[str, Any]) -> None:
    task_id = api.submit({"type": "echo", "group": "team-a", **body})
    response = api.post(f"/v1/tasks/{task_id}/pause")
    assert (response.status_code, response.headers["content-type"]) == (409, "application/problem+json")
    assert "repeating" in response.json["detail"]


def test_pausing_an_ended_task_is_a_409(api: Api) -> None:
    task_id = waiting_task(api)
    assert api.http.simulate_delete(f"/v1/tasks/{task_id}", headers=ALICE).json["status"] == "cancelled"
    assert api.post(f"/v1/tasks/{task_id}/pause").status_code == 409


def test_resuming_a_task_that_is_not_paused_is_a_409(api: Api) -> None:
    task_id = waiting_task(api)
    response = api.post(f"/v1/tasks/{task_id}/resume")
    assert (response.status_code, response.headers["content-type"]) == (409, "application/problem+json")
    assert "not paused" in response.json["detail"]


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_a_task_outside_the_callers_groups_is_a_404_and_unchanged(api: Api, action: str) -> None:
    task_id = waiting_task(api)
    if action == "resume":
        api.post(f"/v1/tasks/{task_id}/pause")
    version = api.store.get(task_id).version
    response = api.post(f"/v1/tasks/{task_id}/{action}", BOB)
    assert (response.status_code, response.headers["content-type"]) == (404, "application/problem+json")
    assert "team-a" not in response.text
    assert api.store.get(task_id).version == version
    assert api.post(f"/v1/tasks/no-such-task/{action}").status_code == 404


@pytest.mark.parametrize("action", ["pause", "resume"])
def test_pausing_and_resuming_need_a_token(api: Api, action: str) -> None:
    response = api.http.simulate_post(f"/v1/tasks/t-1/{action}")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
