"""Readiness tells the truth (issue 14, point 8): ``/readyz`` fails while SQS or S3 cannot be reached, and
services with settings that cannot work together refuse to start with one line."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import running_stack
from tqdev.faults import Fault, FaultProxy
from tqdev.stack import BIN, Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def proxy(emulator: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=emulator) as started:
        yield started


@pytest.fixture(scope="module")
def stack(proxy: FaultProxy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose every AWS call goes through the fault proxy."""
    with running_stack(proxy.url, tmp_path_factory.mktemp("ready"), executors=1) as started:
        yield started


def readiness_until(stack: Stack, status: int, timeout_s: float = 15) -> dict[str, Any]:
    """Poll ``/readyz`` until it answers ``status``; its body."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = httpx.get(f"{stack.url}/readyz", timeout=10)
        if answer.status_code == status:
            body: dict[str, Any] = answer.json()
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"/readyz still {answer.status_code} after {timeout_s} s: {answer.text}")
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("service", "fault"),
    [("sqs", Fault.reset()), ("s3", Fault.error("InternalError", status=500))],
)
def test_readyz_fails_while_a_dependency_is_unreachable_and_recovers(
    proxy: FaultProxy, stack: Stack, service: str, fault: Fault
) -> None:
    readiness_until(stack, 200)
    # Each gateway worker answers from its own check for up to 1 s: wait that out, so no worker answers from a
    # check made before the fault (or during the previous case's fault).
    time.sleep(1.5)
    # When every call to the service fails
    rule = proxy.inject(fault, service=service)
    try:
        down = readiness_until(stack, 503)
    finally:
        proxy.remove(rule)
    # Then readiness names it (and only it), as a problem document
    assert down["unreachable"] == [service]
    assert f"{service} (" in down["detail"]
    assert down["type"].endswith("not-ready")
    assert rule.hits >= 1
    # and is ready again once it answers
    assert readiness_until(stack, 200)["status"] == "ready"


SERVICES = ["tq-gateway", "tq-executor", "tq-scheduler", "tq-reaper"]


@pytest.mark.parametrize("program", SERVICES)
def test_a_heartbeat_not_shorter_than_the_lease_refuses_to_start(program: str, tmp_path: Path) -> None:
    refusal = start_refused(program, {"TQ_HEARTBEAT_S": "10", "TQ_LEASE_S": "5"}, tmp_path)
    assert "TQ_HEARTBEAT_S (10) must be less than TQ_LEASE_S (5)" in refusal


def test_a_gateway_requiring_a_service_that_does_not_exist_refuses_to_start(tmp_path: Path) -> None:
    refusal = start_refused("tq-gateway", {"TQ_READY_REQUIRES": "executor,schedulers"}, tmp_path)
    assert "TQ_READY_REQUIRES names schedulers: no such service" in refusal


def start_refused(program: str, env: dict[str, str], cwd: Path) -> str:
    """Start ``program`` with ``env``; assert it exits 2 with one line on stderr and no traceback; that line."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TQ_")}
    # An endpoint nothing listens on: a service that started anyway would not get far, but would not exit 2.
    full = {**clean, "TQ_ENDPOINT_URL": "http://127.0.0.1:9", "TQ_METRICS_PORT": "0", **env}
    done = subprocess.run(
        [str(BIN / program)], env=full, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert lines[0].startswith(f"{program}: refusing to start: ")
    return lines[0]
