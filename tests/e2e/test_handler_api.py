"""Handlers written against the ``tq`` package, in a module outside the repository's sources, on a real stack:
progress shows on the task while it runs, ``Permanent`` fails it at once, class and async handlers work (issue 16).
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.conftest import running_stack, wait_for_status
from tqdev.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HANDLERS = """
    import asyncio
    import os

    from tq import Permanent, TaskContext, handler


    @handler("e2e-progress")
    def progressing(ctx: TaskContext) -> dict:
        ctx.progress(0.5, "half way")
        ctx.sleep(float(ctx.payload["hold_s"]))
        ctx.progress(1.0, "done")
        return {"done": True}


    @handler("e2e-permanent", max_retries=5)
    def refusing(ctx: TaskContext) -> dict:
        ctx.log("looking at the input")
        raise Permanent("bad input: retrying cannot fix it")


    @handler("e2e-model")
    class Model:
        setups = 0

        def setup(self) -> None:
            type(self).setups += 1

        def teardown(self) -> None:
            pass

        def __call__(self, ctx: TaskContext) -> dict:
            return {"setups": type(self).setups, "pid": os.getpid()}


    @handler("e2e-async")
    async def fetching(ctx: TaskContext) -> dict:
        await asyncio.sleep(0.01)
        return {"echo": ctx.payload}
"""


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose executors load the demo types and a handler module from a temporary directory."""
    modules = tmp_path_factory.mktemp("handlers")
    (modules / "e2e_handlers.py").write_text(textwrap.dedent(HANDLERS))
    env = {"TQ_HANDLER_MODULES": "tq_executor.demo,e2e_handlers", "PYTHONPATH": str(modules)}
    with running_stack(emulator, tmp_path_factory.mktemp("stack"), executors=1, env=env) as started:
        yield started


def test_progress_shows_on_the_task_while_it_runs_without_events_or_versions(
    client: Callable[[str], httpx.Client],
) -> None:
    alice = client("alice")
    # Given a task whose handler reports half way, then works a few seconds
    task_id = alice.post("/v1/tasks", json={"type": "e2e-progress", "group": "team-a", "payload": {"hold_s": 4}})
    task_id = task_id.json()["id"]
    assert alice.get(f"/v1/tasks/{task_id}").json()["progress"] is None
    # When it runs, GET shows the report (and so does a listing)
    deadline = time.monotonic() + 20
    while (task := alice.get(f"/v1/tasks/{task_id}").json())["progress"] is None:
        assert time.monotonic() < deadline, task
        time.sleep(0.05)
    assert task["status"] == "running"
    assert (task["progress"]["fraction"], task["progress"]["message"]) == (0.5, "half way")
    assert task["progress"]["at"].endswith("Z")
    listed = alice.get("/v1/tasks", params={"group": "team-a", "type": "e2e-progress"}).json()["items"]
    assert [t["progress"]["message"] for t in listed if t["id"] == task_id] == ["half way"]
    # Then the report made no event and no new version
    claimed = alice.get(f"/v1/tasks/{task_id}/events").json()["items"]
    assert claimed[-1]["type"] == "claimed"
    assert task["version"] == claimed[-1]["seq"]
    # and the last report, made just before it returned, is on the finished task
    done = wait_for_status(alice, task_id, {"succeeded", "failed"}, timeout_s=20)
    assert (done["status"], done["result"]) == ("succeeded", {"done": True})
    assert (done["progress"]["fraction"], done["progress"]["message"]) == (1.0, "done")
    events = alice.get(f"/v1/tasks/{task_id}/events").json()["items"]
    assert [e["type"] for e in events] == ["submitted", "queued", "claimed", "succeeded"]


def test_permanent_fails_the_task_after_one_attempt_into_the_dlq(client: Callable[[str], httpx.Client]) -> None:
    alice = client("alice")
    # Given a task whose handler raises Permanent, with five retries left
    body = {"type": "e2e-permanent", "group": "team-a", "retry": {"max_retries": 5}}
    created = alice.post("/v1/tasks", json=body).json()
    # When it runs, the task fails at once: one attempt, no retry
    done = wait_for_status(alice, created["id"], {"failed", "succeeded"}, timeout_s=20)
    assert (done["status"], done["attempts"]) == ("failed", 1)
    assert done["last_error"] == {"type": "Permanent", "message": "bad input: retrying cannot fix it"}
    # Then it is a dead letter, its run failed, and its failed event says no retry follows
    dlq = alice.get("/v1/dlq", params={"group": "team-a"}).json()["items"]
    assert created["id"] in [t["id"] for t in dlq]
    runs = alice.get(f"/v1/tasks/{created['id']}/runs").json()["items"]
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "failed")]
    events = alice.get(f"/v1/tasks/{created['id']}/events").json()["items"]
    assert [e["type"] for e in events][-2:] == ["failed", "dead_lettered"]
    assert events[-2]["data"]["retryable"] is False
    assert "looking at the input" in alice.get(f"/v1/tasks/{created['id']}/runs/{runs[0]['run_id']}/log").text


def test_a_retried_failure_says_it_is_retryable(client: Callable[[str], httpx.Client]) -> None:
    alice = client("alice")
    body = {"type": "flaky", "group": "team-a", "payload": {"fail_times": 1}, "retry": {"backoff_base_s": 0.5}}
    task_id = alice.post("/v1/tasks", json=body).json()["id"]
    assert wait_for_status(alice, task_id, {"succeeded", "failed"}, timeout_s=30)["status"] == "succeeded"
    events = alice.get(f"/v1/tasks/{task_id}/events").json()["items"]
    assert [e["data"]["retryable"] for e in events if e["type"] == "failed"] == [True]


def test_class_and_async_handlers_and_the_demo_types_run_beside_each_other(
    client: Callable[[str], httpx.Client],
) -> None:
    alice = client("alice")
    ids = [
        alice.post("/v1/tasks", json={"type": kind, "group": "team-a", "payload": {"n": n}}).json()["id"]
        for n, kind in enumerate(["e2e-model", "e2e-model", "e2e-async", "echo"])
    ]
    done = [wait_for_status(alice, task_id, {"succeeded", "failed"}, timeout_s=20) for task_id in ids]
    assert [t["status"] for t in done] == ["succeeded"] * 4
    first, second, fetched, echoed = (t["result"] for t in done)
    # each handler process sets its instance up once, whichever of them served the two tasks
    assert first["setups"] == second["setups"] == 1
    assert (fetched, echoed) == ({"echo": {"n": 2}}, {"n": 3})
