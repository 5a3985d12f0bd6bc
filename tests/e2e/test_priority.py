"""Executors drain high before normal before low."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import executions, start_stack

pytestmark = pytest.mark.e2e

PER_PRIORITY = 4


def test_a_single_worker_thread_runs_high_then_normal_then_low(emulator: str, tmp_path: Path) -> None:
    # Given a stack with no executor yet (types registered) and queued work of every priority, low first
    stack = start_stack(emulator, tmp_path, executors=0, env={"TQ_THREADS": "1"})
    try:
        priority_of = {}
        with httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=10) as api:
            for priority in ("low", "normal", "high"):
                for _ in range(PER_PRIORITY):
                    body = {"type": "sleep", "group": "team-a", "priority": priority, "payload": {"seconds": 0.3}}
                    response = api.post("/v1/tasks", json=body)
                    assert response.status_code == 201, response.text
                    priority_of[response.json()["id"]] = priority
        # When one executor with one worker thread starts
        stack.add_executor()
        deadline = time.monotonic() + 60
        while len(executions(stack)) < len(priority_of):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        # Then, after whichever message reached the thread first, it runs all high, then normal, then low
        order = [priority_of[task_id] for task_id, _ in executions(stack)]
        rank = {"high": 0, "normal": 1, "low": 2}
        ranks = [rank[p] for p in order[1:]]
        assert ranks == sorted(ranks), order
    finally:
        stack.stop()
