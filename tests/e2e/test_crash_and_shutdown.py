"""Executors that die or are stopped: no task is lost, no attempt runs twice (issue 3, acceptance 4 and 5)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import executions, start_stack, wait_for_status
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.settings import CoreSettings
from tqdev.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FAST_LEASES = {"TQ_LEASE_S": "6", "TQ_HEARTBEAT_S": "2", "TQ_REAPER_INTERVAL_S": "1"}


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def submit_sleep(api: httpx.Client, seconds: float, **extra: Any) -> str:
    body = {"type": "sleep", "group": "team-a", "payload": {"seconds": seconds}, **extra}
    response = api.post("/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def running_on(stack: Stack, api: httpx.Client, task_id: str) -> int:
    """Wait until the task runs; the pid of the executor holding it."""
    task = wait_for_status(api, task_id, {"running"}, timeout_s=15)
    pid = int(task["worker"].rsplit(":", 1)[1])
    assert stack.executor_by_pid(pid) is not None, "the worker field names one of our executors"
    return pid


def claims(api: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    events = api.get(f"/v1/tasks/{task_id}/events").json()["items"]
    return [e for e in events if e["type"] == "claimed"]


@pytest.fixture
def api_for() -> Iterator[Any]:
    clients: list[httpx.Client] = []

    def make(stack: Stack) -> httpx.Client:
        client = httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=10)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_killing_the_executor_of_a_running_task_reruns_it_after_its_lease(
    emulator: str, tmp_path: Path, api_for: Any
) -> None:
    stack = start_stack(emulator, tmp_path, env=FAST_LEASES)
    try:
        api = api_for(stack)
        # A sleep that outlasts the 5 s its handler is given to die: only being killed ends it in time.
        task_id = submit_sleep(api, 12, retry={"backoff_base_s": 0.5})
        pid = running_on(stack, api, task_id)
        deadline = time.monotonic() + 10
        while (task_id, 1) not in executions(stack):  # the handler itself has started
            assert time.monotonic() < deadline
            time.sleep(0.05)
        handlers = descendants(pid)
        assert handlers, "the handler runs in a child process of the executor"
        # When the executor holding the task is SIGKILLed
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        # Then its handler processes die with it
        deadline = time.monotonic() + 5
        while any(alive(p) for p in handlers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [p for p in handlers if alive(p)], "no handler outlives its executor"
        # and the task is re-run within lease + reaper interval + a few seconds, and succeeds
        done = wait_for_status(api, task_id, {"succeeded", "failed"}, timeout_s=40)
        assert done["status"] == "succeeded"
        second = claims(api, task_id)[1]
        assert ts(second["at"]) - killed_at < 6 + 1 + 4
        runs = api.get(f"/v1/tasks/{task_id}/runs").json()["items"]
        assert [r["status"] for r in runs] == ["succeeded", "lost"]  # newest first
        attempts = [e for e in executions(stack) if e[0] == task_id]
        assert attempts == [(task_id, 1), (task_id, 2)]
    finally:
        stack.stop()


#: A handler module whose import takes ``SLOW_HANDLERS_S`` in the executor's fork server only (started as
#: ``python -c``), as heavy handler dependencies do on a loaded host: the executor itself imports it at once and
#: starts consuming, while its handler processes cannot start yet. ``SLOW_HANDLERS_MARK`` notes the import.
SLOW_HANDLERS = """
import os
import sys
import time
from pathlib import Path

if sys.argv[:1] == ["-c"]:
    Path(os.environ["SLOW_HANDLERS_MARK"]).write_text(str(os.getpid()))
    time.sleep(float(os.environ["SLOW_HANDLERS_S"]))
"""


def test_an_executor_killed_while_its_handler_processes_start_costs_its_task_no_attempt(
    emulator: str, tmp_path: Path, api_for: Any
) -> None:
    modules = tmp_path / "handlers"
    modules.mkdir()
    (modules / "slow_handlers.py").write_text(SLOW_HANDLERS)
    mark = tmp_path / "fork-server-importing"
    stack = start_stack(emulator, tmp_path, executors=0, env=FAST_LEASES)
    try:
        api = api_for(stack)
        task_id = submit_sleep(api, 0)
        # Given an executor whose handler processes take 20 s to start
        slow = stack.add_executor(
            {
                "TQ_HANDLER_MODULES": "tq_executor.demo,slow_handlers",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")])),
                "SLOW_HANDLERS_S": "20",
                "SLOW_HANDLERS_MARK": str(mark),
            }
        )
        deadline = time.monotonic() + 30
        while not mark.exists():  # its fork server is importing the handler modules
            assert time.monotonic() < deadline, "the executor's fork server never started"
            time.sleep(0.05)
        time.sleep(2)  # its consumers could have received the task by now
        # Then it holds no lease it cannot serve: the task is still queued
        assert api.get(f"/v1/tasks/{task_id}").json()["status"] == "queued"
        # and when it is SIGKILLed then, another executor runs the task's first attempt within about a lease
        os.kill(slow.pid, signal.SIGKILL)
        killed_at = time.time()
        stack.add_executor()
        done = wait_for_status(api, task_id, {"succeeded", "failed"}, timeout_s=30)
        assert done["status"] == "succeeded"
        assert done["attempts"] == 1
        events = [e["type"] for e in api.get(f"/v1/tasks/{task_id}/events").json()["items"]]
        assert "lease_expired" not in events, events
        assert ts(claims(api, task_id)[0]["at"]) - killed_at < 6 + 4
        assert [e for e in executions(stack) if e[0] == task_id] == [(task_id, 1)]
    finally:
        stack.stop()


def test_sigterm_lets_a_running_attempt_finish_within_the_grace_period(
    emulator: str, tmp_path: Path, api_for: Any
) -> None:
    stack = start_stack(emulator, tmp_path, executors=1, env={"TQ_SHUTDOWN_GRACE_S": "25"})
    try:
        api = api_for(stack)
        task_id = submit_sleep(api, 20)
        pid = running_on(stack, api, task_id)
        # When its executor is told to stop while the 20 s sleep runs
        os.kill(pid, signal.SIGTERM)
        # and a task arrives during its grace period
        later_id = submit_echo(api)
        # Then the attempt finishes there, once, and the executor exits after it
        done = wait_for_status(api, task_id, {"succeeded", "failed", "queued"}, timeout_s=30)
        assert done["status"] == "succeeded"
        assert done["attempts"] == 1
        proc = stack.executor_by_pid(pid)
        assert proc is not None
        proc.popen.wait(timeout=10)
        assert len(claims(api, task_id)) == 1
        # having taken no new work: the later task waits, unclaimed, for another executor, which runs it
        assert api.get(f"/v1/tasks/{later_id}").json()["status"] == "queued"
        assert not claims(api, later_id)
        stack.add_executor()
        assert wait_for_status(api, later_id, {"succeeded", "failed"}, timeout_s=20)["status"] == "succeeded"
        assert [e for e in executions(stack) if e[0] == later_id] == [(later_id, 1)]
    finally:
        stack.stop()


def test_sigterm_with_a_short_grace_hands_the_attempt_to_another_executor_at_once(
    emulator: str, tmp_path: Path, api_for: Any
) -> None:
    stack = start_stack(emulator, tmp_path, executors=2, env={"TQ_SHUTDOWN_GRACE_S": "2"})
    try:
        api = api_for(stack)
        task_id = submit_sleep(api, 8)
        pid = running_on(stack, api, task_id)
        os.kill(pid, signal.SIGTERM)
        stopped_at = time.time()
        done = wait_for_status(api, task_id, {"succeeded", "failed"}, timeout_s=30)
        assert done["status"] == "succeeded"
        first, second = claims(api, task_id)
        # released after the 2 s grace and claimed elsewhere long before the 30 s lease would have run out
        assert second["data"]["worker"] != first["data"]["worker"]
        assert ts(second["at"]) - stopped_at < 2 + 5
        runs = api.get(f"/v1/tasks/{task_id}/runs").json()["items"]
        assert [r["status"] for r in runs] == ["succeeded", "lost"]
        assert done["finished_at"] is not None
        assert datetime.now(UTC).timestamp() - stopped_at < 30
        # An idle executor told to stop exits at once (within its 1 s poll), not after a restart delay
        idle = next(proc for proc in stack.executors if proc.pid != pid)
        assert idle.alive()
        os.kill(idle.pid, signal.SIGTERM)
        told_at = time.monotonic()
        idle.popen.wait(timeout=10)
        assert time.monotonic() - told_at < 2.5
    finally:
        stack.stop()


def test_sigterm_gives_back_at_once_the_tasks_it_received_but_had_not_started(
    emulator: str, tmp_path: Path, api_for: Any
) -> None:
    # Given one executor with one worker thread, busy with a 15 s sleep, that has received two echo tasks too
    stack = start_stack(emulator, tmp_path, executors=1, env={"TQ_THREADS": "1", "TQ_SHUTDOWN_GRACE_S": "25"})
    try:
        api = api_for(stack)
        sleeping = submit_sleep(api, 15)
        pid = running_on(stack, api, sleeping)
        echoes = [submit_echo(api) for _ in range(2)]
        deadline = time.monotonic() + 10
        while normal_in_flight(api) < 3:
            assert time.monotonic() < deadline, "the executor never received the echo tasks"
            time.sleep(0.2)
        # and a second executor, running (the echo tasks are invisible to it: the first one holds them)
        stack.add_executor()
        registry = DynamoRegistry(aws.client(settings_of(stack), "dynamodb"), settings_of(stack))
        deadline = time.monotonic() + 15
        while len(registry.alive().get("executor", [])) < 2:
            assert time.monotonic() < deadline, "the second executor never started"
            time.sleep(0.2)
        # When the first one is told to stop
        os.kill(pid, signal.SIGTERM)
        # Then the other executor runs the echo tasks while the sleep still runs there, each once
        for echo in echoes:
            assert wait_for_status(api, echo, {"succeeded", "failed"}, timeout_s=20)["status"] == "succeeded"
            assert [c["data"]["worker"].rsplit(":", 1)[1] for c in claims(api, echo)] != [str(pid)]
            assert len(claims(api, echo)) == 1
        assert api.get(f"/v1/tasks/{sleeping}").json()["status"] == "running"
        assert wait_for_status(api, sleeping, {"succeeded", "failed"}, timeout_s=25)["status"] == "succeeded"
    finally:
        stack.stop()


def submit_echo(api: httpx.Client) -> str:
    response = api.post("/v1/tasks", json={"type": "echo", "group": "team-a", "payload": {"n": 1}})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def normal_in_flight(api: httpx.Client) -> int:
    queues = api.get("/v1/queues").json()["queues"]
    return int(next(q["in_flight"] for q in queues if q["priority"] == "normal"))


def test_every_service_leaves_the_presence_registry_when_it_stops(emulator: str, tmp_path: Path) -> None:
    # Given a running stack, whose services all heartbeat into the presence registry
    stack = start_stack(emulator, tmp_path)
    try:
        registry = DynamoRegistry(aws.client(settings_of(stack), "dynamodb"), settings_of(stack))
        expected = {"gateway": 1, "executor": 2, "scheduler": 1, "reaper": 1}
        # Ready means one executor is; the second may heartbeat a moment later on a loaded box.
        deadline = time.monotonic() + 15
        while True:
            alive = registry.alive()
            counts = {s: len(alive.get(s, [])) for s in expected}
            if counts == expected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert counts == expected
    finally:
        # When the stack is stopped (SIGTERM to every process)
        stack.stop()
    # Then none of them still counts as alive: they left, rather than running out 30 s later
    assert registry.alive() == {}


def settings_of(stack: Stack) -> CoreSettings:
    return CoreSettings(endpoint_url=stack.config.endpoint_url, prefix=stack.config.prefix)
