"""``GET /v1/tasks/{id}/runs/{run_id}/log`` over in-memory fakes: 200 text, 404 and 410 cases, who sees what."""

from __future__ import annotations

import itertools

import falcon.testing
import pytest

from tq_gateway.testing import client_over_fakes
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import RunLog
from tqcore.domain.task import Task
from tqcore.testing import (
    FixedClock,
    InMemoryRunLogs,
    InMemoryTaskStore,
)
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
BOB = {"Authorization": "Bearer dev-bob"}  # not in team-a
WORKER = "host-a:1"


class Api:
    def __init__(self) -> None:
        self.store, self.clock, self.logs = InMemoryTaskStore(), FixedClock(), InMemoryRunLogs()
        self._ids = (f"t-{n}" for n in itertools.count(1))
        self.http = client_over_fakes(store=self.store, clock=self.clock, logs=self.logs)

    def ran(self, body: bytes | None, *, finish: bool = True) -> tuple[Task, int]:
        """A task whose attempt 1.1 ran and printed ``body`` (``None``: recorded no log)."""
        cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a"})
        task = Task.submit(
            task_id=next(self._ids), owner="alice", now=self.clock.now(), submitted=cmd.model_dump(mode="json"),
            **cmd.task_fields(),
        )  # fmt: skip
        self.store.create(task)
        task = mutate(self.store, task.committed(), lambda t: t.claim(1, WORKER, self.clock.now(), 30))
        claim = task.claim_seq
        assert claim is not None
        if not finish:
            return task, claim
        log = None if body is None else RunLog(len(body), 60)
        if body:
            self.logs.put(task.id, claim, body)
        task = mutate(self.store, task, lambda t: t.succeed(1, WORKER, None, self.clock.now(), log=log))
        return task, claim

    def get(self, task: Task, run_id: str = "1.1", headers: dict[str, str] = ALICE) -> falcon.testing.Result:
        return self.http.simulate_get(f"/v1/tasks/{task.id}/runs/{run_id}/log", headers=headers)


def test_the_log_is_served_as_text_and_the_run_shows_its_size() -> None:
    api = Api()
    task, _ = api.ran(b"line 1\nline 2\n")
    response = api.get(task)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.content == b"line 1\nline 2\n"
    run = api.http.simulate_get(f"/v1/tasks/{task.id}/runs", headers=ALICE).json["items"][0]
    assert run["log_size"] == 14
    assert run["log_expires_at"] == "2026-01-05T08:01:00.000Z"


def test_a_run_that_printed_nothing_has_an_empty_log() -> None:
    api = Api()
    task, _ = api.ran(b"")
    response = api.get(task)
    assert (response.status_code, response.content) == (200, b"")


def test_after_its_expiry_the_log_is_gone_even_if_still_stored() -> None:
    api = Api()
    task, _ = api.ran(b"x\n")
    api.clock.advance(59)
    assert api.get(task).status_code == 200
    api.clock.advance(1)
    response = api.get(task)
    assert response.status_code == 410
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json["type"] == "urn:tq:problem:gone"


def test_a_log_deleted_by_the_lifecycle_rule_is_gone() -> None:
    api = Api()
    task, claim = api.ran(b"x\n")
    del api.logs.logs[(task.id, claim)]
    assert api.get(task).status_code == 410


@pytest.mark.parametrize(
    ("case", "status"),
    [("other group", 404), ("unknown run", 404), ("unknown task", 404), ("running", 404), ("no log", 404)],
)
def test_not_found_cases(case: str, status: int) -> None:
    api = Api()
    task, _ = api.ran(b"x\n", finish=case != "running") if case != "no log" else api.ran(None)
    if case == "other group":
        response = api.get(task, headers=BOB)
    elif case == "unknown run":
        response = api.get(task, "2.1")
    elif case == "unknown task":
        response = api.http.simulate_get("/v1/tasks/01hzzzzzzzzzzzzzzzzzzzzzzz/runs/1.1/log", headers=ALICE)
    else:
        response = api.get(task)
    assert response.status_code == status
    assert response.json["type"] == "urn:tq:problem:not-found"


def test_without_a_token_it_is_401() -> None:
    api = Api()
    task, _ = api.ran(b"x\n")
    assert api.get(task, headers={}).status_code == 401
