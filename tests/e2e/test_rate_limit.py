"""The per-principal rate limit holds across the gunicorn workers of a gateway (issue 5's acceptance test)."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import start_stack

pytestmark = pytest.mark.e2e

RATE = 20
BURST = 20
REQUESTS = 200
SPREAD_S = 2.0
CLIENTS = 16


def test_two_workers_hold_one_limit_for_a_principal(emulator: str, run_dir: Path) -> None:
    # Given a gateway with two gunicorn workers limiting each principal to 20 requests/s with a burst of 20, and
    # an access log naming the worker (pid) that served each request
    stack = start_stack(
        emulator,
        run_dir,
        executors=0,
        env={
            "TQ_GATEWAY_WORKERS": "2",
            "TQ_RATE_LIMIT_RPS": str(RATE),
            "TQ_RATE_LIMIT_BURST": str(BURST),
            "GUNICORN_CMD_ARGS": "--access-logfile - --access-logformat 'served-by %(p)s %(s)s %(U)s'",
        },
    )
    closing = contextlib.ExitStack()
    try:
        # and the two workers count as one replica, so this host takes the whole limit
        ready = httpx.get(f"{stack.url}/readyz", timeout=5).json()
        assert ready["services"]["gateway"] == 1, ready

        # When alice submits 200 tasks evenly over 2 s (100/s) from 16 connections of their own, opened beforehand
        # (so the first requests reach the gateway on time, not after 16 clients' set-up)
        clients = [
            closing.enter_context(
                httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=10)
            )
            for _ in range(CLIENTS)
        ]
        for client in clients:
            client.get("/healthz").raise_for_status()  # not limited
        local = threading.local()
        spare = list(clients)

        def take_client() -> None:
            local.client = spare.pop()

        def submit(n: int) -> httpx.Response:
            time.sleep(max(0.0, start + n * SPREAD_S / REQUESTS - time.monotonic()))
            api: httpx.Client = local.client
            return api.post("/v1/tasks", json={"type": "echo", "group": "team-a", "payload": {"n": n}})

        with ThreadPoolExecutor(CLIENTS, initializer=take_client) as pool:
            start = time.monotonic() + 0.2
            responses = list(pool.map(submit, range(REQUESTS)))
        elapsed_s = time.monotonic() - start
        closing.close()

        # Then the limit is a token bucket of 20 refilled at 20/s: at most 20 + 20 * elapsed get through, and as
        # the offered 100/s never lets the bucket fill, at least that minus 10 %.
        statuses = Counter(r.status_code for r in responses)
        limit = BURST + RATE * elapsed_s
        accepted, refused = statuses[201], statuses[429]
        print(f"\naccepted {accepted}, refused {refused} in {elapsed_s:.2f} s; limit {limit:.1f}")
        assert accepted + refused == REQUESTS, statuses
        assert 0.9 * limit <= accepted <= 1.1 * limit, (accepted, limit)
        # and every refusal is a problem with a whole number of seconds to wait
        for response in responses:
            if response.status_code == 429:
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["type"] == "urn:tq:problem:rate-limited"
                assert int(response.headers["retry-after"]) >= 1
        # and both workers served (and refused) alice's requests
        served = re.findall(r"served-by <(\d+)> (\d+) /v1/tasks", (run_dir / "gateway.log").read_text())
        by_worker = Counter(pid for pid, _ in served)
        print(f"requests by worker pid: {dict(by_worker)}")
        assert len(by_worker) == 2, by_worker
        assert {pid for pid, status in served if status == "201"} == set(by_worker)
    finally:
        closing.close()
        stack.stop()
