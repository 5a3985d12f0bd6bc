"""Chaos: 2,000 tasks while executors are SIGKILLed every 3 s. Nothing is lost, no attempt runs twice.

Also `make chaos`. Figures (counts, durations, kills) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import executions, start_stack

pytestmark = [pytest.mark.integration, pytest.mark.volume, pytest.mark.chaos]

TASKS = int(os.environ.get("TQ_CHAOS_TASKS", "2000"))
KILL_EVERY_S = 3.0
DEADLINE_S = 420
CHAOS_ENV = {
    "TQ_LEASE_S": "6",
    "TQ_HEARTBEAT_S": "2",
    "TQ_REAPER_INTERVAL_S": "1",
    "TQ_RESEND_AFTER_S": "10",
}


def body(n: int, rng: random.Random) -> dict[str, Any]:
    kind = n % 3
    # Generous budgets for echo and sleep: only flaky tasks are meant to run out of retries.
    if kind == 0:
        return {
            "type": "echo",
            "group": "team-a",
            "payload": {"n": n},
            "retry": {"max_retries": 20, "backoff_base_s": 0.5},
        }
    if kind == 1:
        payload = {"seconds": round(rng.uniform(0, 2), 2)}
        return {
            "type": "sleep",
            "group": "team-a",
            "payload": payload,
            "retry": {"max_retries": 20, "backoff_base_s": 0.5},
        }
    retry = {"max_retries": 2, "backoff_base_s": 0.5}
    return {"type": "flaky", "group": "team-a", "payload": {"fail_times": rng.randint(0, 3)}, "retry": retry}


@pytest.mark.timeout(DEADLINE_S + 180 + 60)  # its own bounds: the chaos, the settling, start and stop
def test_two_thousand_tasks_survive_executors_killed_every_three_seconds(emulator: str, tmp_path: Path) -> None:
    rng = random.Random(20261123)
    stack = start_stack(emulator, tmp_path, executors=3, reapers=2, env=CHAOS_ENV)
    kills = 0
    started = time.monotonic()
    try:
        with httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=30) as api:
            bodies = [body(n, rng) for n in range(TASKS)]
            with ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(lambda b: api.post("/v1/tasks", json=b), bodies))
            assert [r.status_code for r in responses] == [201] * TASKS
            ids = [r.json()["id"] for r in responses]
            spec = dict(zip(ids, bodies, strict=True))
            submitted_s = time.monotonic() - started

            def finished() -> int:
                return len({task_id for task_id, _ in executions(stack)})

            # Every 3 s: SIGKILL a random live executor and start a new one, until the handlers have seen
            # every task (then stop the chaos and let retries and reclaims settle).
            next_kill = time.monotonic() + KILL_EVERY_S
            while finished() < TASKS and time.monotonic() - started < DEADLINE_S:
                if time.monotonic() >= next_kill:
                    victims = [p for p in stack.executors if p.alive()]
                    victim = rng.choice(victims)
                    os.kill(victim.pid, signal.SIGKILL)
                    kills += 1
                    stack.add_executor()
                    next_kill += KILL_EVERY_S
                time.sleep(0.1)
            chaos_s = time.monotonic() - started

            def final(task_id: str) -> dict[str, Any]:
                return api.get(f"/v1/tasks/{task_id}").json()

            deadline = time.monotonic() + 180
            while True:
                with ThreadPoolExecutor(8) as pool:
                    tasks = list(pool.map(final, ids))
                unfinished = [t for t in tasks if t["status"] not in ("succeeded", "failed")]
                if not unfinished or time.monotonic() > deadline:
                    break
                time.sleep(2)
            total_s = time.monotonic() - started
    finally:
        stack.stop()

    statuses = Counter(t["status"] for t in tasks)
    ran = executions(stack)
    duplicates = [key for key, count in Counter(ran).items() if count > 1]
    print(
        f"\nchaos: {TASKS} tasks, {kills} executors SIGKILLed, submitted in {submitted_s:.0f} s, "
        f"chaos for {chaos_s:.0f} s, settled in {total_s:.0f} s; statuses {dict(statuses)}; "
        f"handler executions {len(ran)}, attempts beyond the first {sum(t['attempts'] - 1 for t in tasks)}, "
        f"duplicate (task, attempt) executions {len(duplicates)}"
    )
    # None is lost: every task ended succeeded, or failed because flaky exceeded its budget
    assert not unfinished, [(t["id"], t["status"]) for t in unfinished[:5]]
    for task in tasks:
        if task["status"] == "failed":
            assert spec[task["id"]]["type"] == "flaky", task
            assert task["attempts"] == spec[task["id"]]["retry"]["max_retries"] + 1
    # flaky tasks that needed no more attempts than their budget allows all succeeded
    for task in tasks:
        wanted = spec[task["id"]]
        if wanted["type"] == "flaky" and wanted["payload"]["fail_times"] == 0 and task["attempts"] == 1:
            assert task["status"] == "succeeded"
    # and no (task, attempt) was executed twice
    assert not duplicates, duplicates[:5]
    assert kills >= 3
