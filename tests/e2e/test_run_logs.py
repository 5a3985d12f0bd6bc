"""Run logs end to end (issue 5, acceptance 2): a script's 10,000 lines served by ``/runs/{run_id}/log``, then 410.

The local stack's ``script`` allow-list (contract: echo, sleep, true, false, date) is extended for this stack only,
through ``TQ_SCRIPT_ALLOW``, with ``seq`` (``seq 1 10000`` is the plainest way to print 10,000 known lines) and
``date --no-such-option`` (a program that fails with a line on stderr).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import datetime

import httpx
import pytest

from tests.conftest import running_stack, wait_for_status
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

RETENTION_S = 5
SCRIPTS = {"seq": {"args": ["[0-9]{1,6}", "[0-9]{1,6}"]}, "date": {"args": ["--no-such-option"]}}
ENV = {"TQ_RUN_LOG_RETENTION_S": str(RETENTION_S), "TQ_SCRIPT_ALLOW": json.dumps(SCRIPTS)}


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(emulator, tmp_path_factory.mktemp("stack"), executors=1, env=ENV) as started:
        yield started


def run_script(api: httpx.Client, argv: list[str]) -> dict:
    response = api.post("/v1/tasks", json={"type": "script", "group": "team-a", "payload": {"argv": argv}})
    assert response.status_code == 201, response.text
    return wait_for_status(api, response.json()["id"], {"succeeded", "failed", "retrying"}, timeout_s=30)


def test_a_script_printing_10000_lines_has_them_all_in_its_log_until_it_expires(
    client: Callable[[str], httpx.Client],
) -> None:
    alice, bob = client("alice"), client("bob")
    expected = "".join(f"{n}\n" for n in range(1, 10001))
    # Given a script task that printed 10,000 lines
    started = time.monotonic()
    task = run_script(alice, ["seq", "1", "10000"])
    ran_s = time.monotonic() - started
    assert task["status"] == "succeeded"
    # Then its run shows the log's size and expiry
    run = alice.get(f"/v1/tasks/{task['id']}/runs").json()["items"][0]
    assert run["status"] == "succeeded"
    assert run["log_size"] == len(expected)
    expires_at = datetime.fromisoformat(run["log_expires_at"].replace("Z", "+00:00"))
    finished_at = datetime.fromisoformat(run["finished_at"].replace("Z", "+00:00"))
    assert 0 <= (expires_at - finished_at).total_seconds() - RETENTION_S < 1
    # and the log serves every line, in order
    url = f"/v1/tasks/{task['id']}/runs/{run['run_id']}/log"
    fetched = time.monotonic()
    response = alice.get(url)
    fetch_s = time.monotonic() - fetched
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == expected
    print(f"\n  10,000-line script: submit->succeeded {ran_s:.2f} s, log GET {fetch_s * 1000:.0f} ms")
    # Another group's principal does not see it
    assert bob.get(url).status_code == 404
    # When its retention has passed, the log is gone (410), though the object is still in the bucket
    while datetime.now(expires_at.tzinfo) < expires_at:
        time.sleep(0.1)
    gone = alice.get(url)
    assert gone.status_code == 410
    assert gone.headers["content-type"] == "application/problem+json"
    assert alice.get(f"/v1/tasks/{task['id']}/runs").json()["items"][0]["log_size"] == len(expected)


def test_stderr_lines_are_marked_and_a_failing_script_keeps_its_log(client: Callable[[str], httpx.Client]) -> None:
    alice = client("alice")
    task = run_script(alice, ["date", "--no-such-option"])
    assert task["status"] in {"retrying", "failed"}
    run = alice.get(f"/v1/tasks/{task['id']}/runs").json()["items"][0]
    assert run["status"] == "failed"
    body = alice.get(f"/v1/tasks/{task['id']}/runs/{run['run_id']}/log").text
    assert body.startswith("[stderr] ")
    assert "unrecognized option" in body
    assert len(body.encode()) == run["log_size"]


def test_a_silent_task_has_an_empty_log(client: Callable[[str], httpx.Client]) -> None:
    alice = client("alice")
    response = alice.post("/v1/tasks", json={"type": "echo", "group": "team-a", "payload": {"x": 1}})
    task = wait_for_status(alice, response.json()["id"], {"succeeded"})
    run = alice.get(f"/v1/tasks/{task['id']}/runs").json()["items"][0]
    assert run["log_size"] == 0
    log = alice.get(f"/v1/tasks/{task['id']}/runs/{run['run_id']}/log")
    assert (log.status_code, log.content) == (200, b"")
    assert alice.get(f"/v1/tasks/{task['id']}/runs/9.9/log").status_code == 404
