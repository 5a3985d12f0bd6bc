"""1,000 echo tasks over two executors: all succeed and every attempt runs exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import executions
from tqdev.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.volume]

TASKS = 1000


def test_a_thousand_echo_tasks_each_execute_exactly_once(client: Callable[[str], httpx.Client], stack: Stack) -> None:
    assert len(stack.executors) == 2
    alice = client("alice")
    # When 1,000 tasks are submitted from 8 concurrent clients
    with ThreadPoolExecutor(8) as pool:
        responses = list(
            pool.map(
                lambda n: alice.post("/v1/tasks", json={"type": "echo", "group": "team-a", "payload": {"n": n}}),
                range(TASKS),
            )
        )
    assert [r.status_code for r in responses] == [201] * TASKS
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == TASKS
    # Then the handlers' own log shows each of them executed, once, as attempt 1
    deadline = time.monotonic() + 120
    while len({e[0] for e in executions(stack)} & ids) < TASKS and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(2)  # let any duplicate delivery show itself
    ran = [e for e in executions(stack) if e[0] in ids]
    counts = Counter(ran)
    assert set(counts) == {(task_id, 1) for task_id in ids}
    assert max(counts.values()) == 1, [k for k, v in counts.items() if v > 1][:5]
    # and both executors took part
    workers = {line.split()[2] for line in (stack.config.run_dir / "executions.log").read_text().splitlines()}
    assert len(workers) == 2
    # and every task reads succeeded with its payload as result
    with ThreadPoolExecutor(8) as pool:
        tasks = list(pool.map(lambda r: alice.get(f"/v1/tasks/{r.json()['id']}").json(), responses))
    assert Counter(t["status"] for t in tasks) == {"succeeded": TASKS}
    assert all(t["result"] == t["payload"] for t in tasks)
