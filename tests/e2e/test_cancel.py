"""Cancelling a running task (issue 5, acceptance 3): the attempt stops at its next heartbeat."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime

import httpx
import pytest

from tests.conftest import TOKENS, executions, processes, running_stack, wait_for_status
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

HEARTBEAT_S = 1.0
#: Beyond one heartbeat: the executor's poll of its stop flags (50 ms), the commit, and this test's polling.
MARGIN_S = 1.0
ENV = {"TQ_HEARTBEAT_S": str(HEARTBEAT_S)}


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(emulator, tmp_path_factory.mktemp("stack"), executors=1, env=ENV) as started:
        yield started


@pytest.fixture
def alice(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {TOKENS['alice']}"}, timeout=10) as c:
        yield c


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def submit(api: httpx.Client, type_: str, payload: dict) -> str:
    response = api.post("/v1/tasks", json={"type": type_, "group": "team-a", "payload": payload})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def cancel_when_running(
    stack: Stack, api: httpx.Client, task_id: str, started: Callable[[], bool] | None = None
) -> float:
    """Wait until the handler runs (``started``, else its line in the demo handlers' execution log), DELETE as
    alice; seconds from the DELETE to ``cancelled``."""
    wait_for_status(api, task_id, {"running"}, timeout_s=15)
    deadline = time.monotonic() + 10
    while not (started() if started else (task_id, 1) in executions(stack)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    started = time.monotonic()
    response = api.delete(f"/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["cancel_requested"]) == ("running", True)
    wait_for_status(api, task_id, {"cancelled"}, timeout_s=HEARTBEAT_S + MARGIN_S + 5)
    return time.monotonic() - started


def test_cancelling_a_running_sleep_stops_it_within_one_heartbeat(stack: Stack, alice: httpx.Client) -> None:
    # Given a 60 s sleep that is running
    task_id = submit(alice, "sleep", {"seconds": 60})
    # When alice cancels it
    elapsed_s = cancel_when_running(stack, alice, task_id)
    print(f"\n  DELETE -> cancelled: {elapsed_s * 1000:.0f} ms (heartbeat {HEARTBEAT_S} s)")
    # Then it is cancelled within one heartbeat (plus a small margin), not after 60 s
    assert elapsed_s <= HEARTBEAT_S + MARGIN_S
    task = alice.get(f"/v1/tasks/{task_id}").json()
    assert (task["status"], task["result"], task["worker"]) == ("cancelled", None, None)
    run = alice.get(f"/v1/tasks/{task_id}/runs").json()["items"][0]
    assert run["status"] == "cancelled"
    assert (ts(run["finished_at"]) - ts(run["started_at"])).total_seconds() < 10  # the sleep did not complete
    assert run["log_size"] == 0
    events = alice.get(f"/v1/tasks/{task_id}/events").json()["items"]
    by_type = {e["type"]: e for e in events}
    assert by_type["cancel_requested"]["actor"] == "alice"
    assert by_type["cancelled"]["actor"].startswith("executor:")
    assert [e["type"] for e in events].count("cancelled") == 1
    assert "succeeded" not in by_type
    assert "failed" not in by_type
    # and the executor is free for the next task at once
    started = time.monotonic()
    follow = submit(alice, "echo", {"n": 1})
    assert wait_for_status(alice, follow, {"succeeded"}, timeout_s=5)["status"] == "succeeded"
    print(f"  next task submit->succeeded: {(time.monotonic() - started) * 1000:.0f} ms")


def test_cancelling_a_running_script_kills_its_program_and_keeps_its_output(stack: Stack, alice: httpx.Client) -> None:
    # Given a script that ignores the stop request (its program sleeps on)
    task_id = submit(alice, "script", {"argv": ["sleep", "61.25"]})
    # When it is cancelled, the handler is asked, then killed after the grace, with its program
    elapsed_s = cancel_when_running(stack, alice, task_id, lambda: bool(processes("sleep", "61.25")))
    print(f"\n  script DELETE -> cancelled: {elapsed_s * 1000:.0f} ms (heartbeat {HEARTBEAT_S} s + 2 s grace)")
    assert elapsed_s <= HEARTBEAT_S + 2.0 + MARGIN_S
    run = alice.get(f"/v1/tasks/{task_id}/runs").json()["items"][0]
    assert run["status"] == "cancelled"
    deadline = time.monotonic() + 5
    while processes("sleep", "61.25") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not processes("sleep", "61.25"), "the program died with its handler process"


def scheduled(api: httpx.Client, group: str) -> str:
    """An echo task of ``group`` waiting for a far-away time: it stays ``scheduled`` until cancelled."""
    body = {"type": "echo", "group": group, "schedule": {"at": "2999-01-01T00:00:00Z"}}
    response = api.post("/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_bulk_cancel_takes_only_the_matching_tasks_of_the_callers_group(
    stack: Stack, alice: httpx.Client, client: Callable[[str], httpx.Client]
) -> None:
    bob = client("bob")
    # Given alice's echo that ended, two scheduled echoes and a running sleep in team-a, and bob's two in team-b
    ended = submit(alice, "echo", {})
    wait_for_status(alice, ended, {"succeeded"}, timeout_s=15)
    waiting = [scheduled(alice, "team-a") for _ in range(2)]
    running = submit(alice, "sleep", {"seconds": 60})
    wait_for_status(alice, running, {"running"}, timeout_s=15)
    bobs = [scheduled(bob, "team-b") for _ in range(2)]
    before = {task_id: alice.get(f"/v1/tasks/{task_id}").json()["version"] for task_id in [*waiting, running]}

    # When alice asks for a dry run of her group's echo tasks
    dry = alice.post("/v1/tasks:cancel", json={"group": "team-a", "type": "echo", "dry_run": True})
    # Then it names the two scheduled ones, newest first, and changes nothing
    assert dry.status_code == 200, dry.text
    assert dry.json() == {"count": 2, "ids": sorted(waiting, reverse=True), "dry_run": True}
    assert {t: alice.get(f"/v1/tasks/{t}").json()["version"] for t in before} == before

    # When bob names alice's group he is refused; naming her tasks as his group's touches nothing
    assert bob.post("/v1/tasks:cancel", json={"group": "team-a"}).status_code == 403
    sneak = bob.post("/v1/tasks:cancel", json={"group": "team-b", "ids": [*waiting, running], "dry_run": False})
    assert sneak.json() == {"count": 0, "ids": [], "dry_run": False}
    assert {t: alice.get(f"/v1/tasks/{t}").json()["version"] for t in before} == before

    # When alice cancels her echo tasks, then her running sleep by id
    done = alice.post("/v1/tasks:cancel", json={"group": "team-a", "type": "echo"}).json()
    stop = alice.post("/v1/tasks:cancel", json={"group": "team-a", "ids": [running, ended]}).json()
    # Then exactly those are cancelled (the sleep once its attempt stops), each with alice as the actor
    assert (done["count"], done["ids"]) == (2, sorted(waiting, reverse=True))
    assert (stop["count"], stop["ids"]) == (1, [running])
    wait_for_status(alice, running, {"cancelled"}, timeout_s=HEARTBEAT_S + MARGIN_S + 5)
    for task_id in waiting:
        assert alice.get(f"/v1/tasks/{task_id}").json()["status"] == "cancelled"
        assert alice.get(f"/v1/tasks/{task_id}/events").json()["items"][-1]["actor"] == "alice"
    events = {e["type"]: e for e in alice.get(f"/v1/tasks/{running}/events").json()["items"]}
    assert events["cancel_requested"]["actor"] == "alice"
    assert alice.get(f"/v1/tasks/{ended}").json()["status"] == "succeeded"
    assert [bob.get(f"/v1/tasks/{t}").json()["status"] for t in bobs] == ["scheduled", "scheduled"]
