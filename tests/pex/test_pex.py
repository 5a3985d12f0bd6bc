"""Each service's pex (``dist/tq-*.pex``, from ``pants package ::``) starts and does its job's first steps.

The four pex files run as one stack against the session's emulator, with the environment ``tqdev.stack`` gives
the local stack: the gateway answers ``/healthz``, and ``/readyz`` once the executor, scheduler and reaper have
announced themselves (so each one connected to the emulator and ran); those three serve ``/metrics``; a task
submitted to the gateway is run to success by the executor; the executor's ``register-types`` registers the
default handlers; every process exits 0 on SIGTERM.
Run by ``scripts/pants-ci.sh`` (``pytest -m pex tests/pex``), not by ``make test``.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tqdev.procs import Proc, free_port
from tqdev.stack import Stack, StackConfig, unique_prefix

pytestmark = [pytest.mark.pex, pytest.mark.timeout(300)]

DIST = Path(__file__).resolve().parents[2] / "dist"
SERVICES = ("gateway", "executor", "scheduler", "reaper")
#: A pex's first run unpacks it into a venv (under ~/.pex) before the service starts.
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


def pex(service: str) -> Path:
    """The service's pex; a missing one fails the test (CI must have built it)."""
    path = DIST / f"tq-{service}.pex"
    assert path.is_file(), f"{path} is missing: run `pants package ::` (scripts/pants-ci.sh) first"
    return path


@dataclass
class Running:
    """The started services: their processes, the gateway's URL and each other service's ``/metrics`` port."""

    stack: Stack
    procs: dict[str, Proc]
    metrics_ports: dict[str, int]

    def poll(self, predicate: Callable[[], bool], what: str) -> None:
        """Poll until ``predicate()``; fail at once if a service exits, or after ``START_TIMEOUT_S``."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            dead = [name for name, proc in self.procs.items() if not proc.alive()]
            assert not dead, f"{', '.join(dead)} exited while waiting for {what} (logs in {self.stack.config.run_dir})"
            try:
                if predicate():
                    return
            except httpx.HTTPError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"no {what} after {START_TIMEOUT_S:.0f} s ({self.stack.config.run_dir})"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """A local stack's configuration with its resources created (no process started)."""
    config = StackConfig(
        endpoint_url=emulator,
        prefix=unique_prefix(),
        run_dir=tmp_path_factory.mktemp("pex"),
        executors=1,
        env={"TQ_SHUTDOWN_GRACE_S": "2"},
    )
    configured = Stack(config)
    configured.bootstrap()
    return configured


@pytest.fixture(scope="module")
def running(stack: Stack) -> Iterator[Running]:
    """The four services, each started from its pex; all stopped afterwards."""
    paths = {service: pex(service) for service in SERVICES}
    started = Running(stack, {}, {})
    try:
        for service, path in paths.items():
            env = stack.env(service)
            if service != "gateway":  # the gateway serves its own /metrics
                started.metrics_ports[service] = free_port()
                env["TQ_METRICS_PORT"] = str(started.metrics_ports[service])
            started.procs[service] = Proc(service, [str(path)], env, stack.config.run_dir / f"{service}.log")
        yield started
    finally:
        for proc in started.procs.values():
            proc.stop(timeout_s=STOP_TIMEOUT_S)


def test_the_gateway_pex_serves_healthz(running: Running) -> None:
    running.poll(lambda: httpx.get(f"{running.stack.url}/healthz", timeout=2).status_code == 200, "/healthz")


@pytest.mark.parametrize("service", ["executor", "scheduler", "reaper"])
def test_each_worker_pex_serves_its_metrics(running: Running, service: str) -> None:
    url = f"http://127.0.0.1:{running.metrics_ports[service]}/metrics"
    running.poll(lambda: httpx.get(url, timeout=2).status_code == 200, f"{service}'s /metrics")
    assert "tq_" in httpx.get(url, timeout=2).text


def test_the_stack_of_pex_files_becomes_ready(running: Running) -> None:
    # Ready means the executor, scheduler and reaper each heartbeat their presence through the emulator.
    running.poll(lambda: httpx.get(f"{running.stack.url}/readyz", timeout=2).status_code == 200, "/readyz")


def test_a_task_submitted_to_the_gateway_pex_is_run_by_the_executor_pex(running: Running) -> None:
    # Given the stack of pex files ready
    test_the_stack_of_pex_files_becomes_ready(running)
    auth = {"Authorization": "Bearer dev-alice"}
    # When a task is submitted through the gateway
    body = {"type": "echo", "group": "team-a", "payload": {"from": "pex"}}
    answer = httpx.post(f"{running.stack.url}/v1/tasks", json=body, headers=auth, timeout=10)
    assert answer.status_code == 201, answer.text
    task_url = f"{running.stack.url}/v1/tasks/{answer.json()['id']}"

    # Then the executor runs it to success, with the payload as its result
    def succeeded() -> bool:
        return httpx.get(task_url, headers=auth, timeout=5).json()["status"] == "succeeded"

    running.poll(succeeded, "the task's success")
    assert httpx.get(task_url, headers=auth, timeout=5).json()["result"] == {"from": "pex"}


def test_the_executor_pex_registers_its_types(stack: Stack) -> None:
    done = subprocess.run(
        [str(pex("executor")), "register-types"],
        env={**stack.env("executor"), "TQ_METRICS_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("tq-executor: registered "), done.stdout


def test_every_pex_exits_cleanly_on_sigterm(running: Running) -> None:
    # Given every service up (the stack is ready)
    test_the_stack_of_pex_files_becomes_ready(running)
    # When each gets SIGTERM
    for proc in running.procs.values():
        proc.stop(timeout_s=STOP_TIMEOUT_S)
    # Then each exited by itself, with status 0
    codes = {name: proc.popen.returncode for name, proc in running.procs.items()}
    assert codes == dict.fromkeys(SERVICES, 0), f"exit codes {codes} (logs in {running.stack.config.run_dir})"
