"""A message buffered unstarted behind long tasks goes to an idle executor after about a lease (issue 14 review).

The busy executor keeps its running attempts' messages hidden but gives back one still waiting for a thread
after about a lease; the idle executor runs it, once, while the long tasks still run.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import executions, running_stack, wait_for_status
from tqdev.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LEASE_S = 6
LONG_S = 30


def submit_sleep(api: httpx.Client, seconds: float) -> str:
    response = api.post("/v1/tasks", json={"type": "sleep", "group": "team-a", "payload": {"seconds": seconds}})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_a_message_buffered_behind_long_tasks_is_run_by_an_idle_executor_within_about_a_lease_once(
    emulator: str, tmp_path: Path
) -> None:
    # Given an executor with two threads and room for three messages, both threads busy with long tasks
    env = {
        "TQ_LEASE_S": str(LEASE_S),
        "TQ_HEARTBEAT_S": "2",
        "TQ_THREADS": "2",
        "TQ_PREFETCH": "3",
        "TQ_RESEND_AFTER_S": "600",
    }
    with (
        running_stack(emulator, tmp_path, executors=1, env=env) as stack,
        httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=10) as api,
    ):
        long = [submit_sleep(api, LONG_S) for _ in range(2)]
        for task_id in long:
            wait_for_status(api, task_id, {"running"}, timeout_s=20)
        # When a short task arrives (the busy executor buffers it) and a second, idle executor starts
        submitted_at = time.monotonic()
        short = submit_sleep(api, 0.1)
        time.sleep(1)
        assert api.get(f"/v1/tasks/{short}").json()["status"] == "queued"
        idle = stack.add_executor()
        # Then the idle executor runs it within about a lease plus its own start-up (about 10 s on a loaded
        # laptop), while the long tasks still run (before the fix it waited for one of them to end)
        done = wait_for_status(api, short, {"succeeded", "failed"}, timeout_s=LONG_S - 10)
        took_s = time.monotonic() - submitted_at
        print(f"\n  short task behind long ones: done {took_s:.1f} s after submit (lease {LEASE_S} s)")
        assert (done["status"], done["attempts"]) == ("succeeded", 1), done
        assert all(api.get(f"/v1/tasks/{t}").json()["status"] == "running" for t in long)
        ran = [row for row in _workers(stack) if row[0] == short]
        assert [worker.rsplit(":", 1)[1] for _, worker in ran] == [str(idle.pid)]
        # and the busy executor's stale copy runs nothing once a thread frees
        for task_id in long:
            wait_for_status(api, task_id, {"succeeded"}, timeout_s=LONG_S + 10)
        time.sleep(1)
        assert [task_id for task_id, _ in executions(stack)].count(short) == 1


def _workers(stack: Stack) -> list[tuple[str, str]]:
    """(task id, worker) of every handler call the demo handlers logged."""
    path = stack.config.run_dir / "executions.log"
    return [(row[0], row[2]) for row in (line.split() for line in path.read_text().splitlines()) if row]
