"""Executor pools on one stack: each pool's executors take only the tasks of the types they registered (issue 16)."""

from __future__ import annotations

import os
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import running_stack
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.settings import CoreSettings
from tqdev.procs import Proc
from tqdev.stack import BIN, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Tasks of each pool's types the test runs.
TASKS_PER_POOL = 200

POOL_A = """
import tq
from pydantic import BaseModel, Field
from tq import TaskContext, handler

TYPES = ("pa.thumb", "pa.plain")


class Thumb(BaseModel):
    width: int = Field(ge=1)
    name: str = "thumb"


@handler("pa.thumb", max_retries=1, timeout_s=77, priority="high", payload=Thumb)
def thumb(ctx: TaskContext) -> dict:
    return {"pool": "a", "worker": ctx.worker}


@handler("pa.plain")
def plain(ctx: TaskContext) -> dict:
    return {"pool": "a", "worker": ctx.worker}
"""

POOL_B = """
import tq
from tq import TaskContext, handler

TYPES = ("pb.work",)


@handler("pb.work", timeout_s=30)
def work(ctx: TaskContext) -> dict:
    return {"pool": "b", "worker": ctx.worker}
"""

POOL_LOST = """
from tq import TaskContext, handler


@handler("pl.lost")
def lost(ctx: TaskContext) -> dict:
    return {}
"""


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory outside the repository's sources holding each pool's handler module."""
    where = tmp_path_factory.mktemp("handlers")
    for name, source in (("pool_a_tasks", POOL_A), ("pool_b_tasks", POOL_B), ("pool_lost_tasks", POOL_LOST)):
        (where / f"{name}.py").write_text(textwrap.dedent(source))
    return where


def pool_env(pool: str, module: str, modules: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")]))
    return {"TQ_POOL": pool, "TQ_HANDLER_MODULES": module, "PYTHONPATH": path}


@pytest.fixture(scope="module")
def pools(emulator: str, modules: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A stack with one default-pool executor (the demo types), one of pool ``a`` and one of pool ``b``."""
    others = [pool_env("a", "pool_a_tasks", modules), pool_env("b", "pool_b_tasks", modules)]
    with running_stack(emulator, tmp_path_factory.mktemp("pools"), executors=1, pool_executors=others) as stack:
        _, a, b = stack.executors
        wait_for_catalog(
            stack, {"pa.thumb": "a", "pa.plain": "a", "pb.work": "b", "echo": "default"}, [worker_of(a), worker_of(b)]
        )
        yield {"stack": stack, "a": a, "b": b}


def core_settings(stack: Stack) -> CoreSettings:
    return CoreSettings(endpoint_url=stack.config.endpoint_url, prefix=stack.config.prefix)


def wait_for_catalog(stack: Stack, expected: dict[str, str], workers: list[str], timeout_s: float = 60) -> None:
    """Poll the catalog until each type is registered in its pool and ``workers`` are alive."""
    settings = core_settings(stack)
    registry = DynamoRegistry(aws.client(settings, "dynamodb"), settings)
    deadline = time.monotonic() + timeout_s
    while True:
        found = {name: info.pool for name, info in registry.task_types().items()}
        alive = registry.alive().get("executor", [])
        if all(found.get(name) == pool for name, pool in expected.items()) and set(workers) <= set(alive):
            return
        if dead := [proc.name for proc in stack.executors if not proc.alive()]:
            raise AssertionError(f"executors exited: {dead} (logs in {stack.config.run_dir})")
        if time.monotonic() > deadline:
            raise AssertionError(f"catalog {found} lacks {expected} after {timeout_s} s")
        time.sleep(0.2)


def worker_of(proc: Proc) -> str:
    return f"{socket.gethostname()}:{proc.pid}"


@pytest.fixture
def alice(pools: dict[str, Any]) -> Iterator[httpx.Client]:
    stack: Stack = pools["stack"]
    with httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=30) as client:
        yield client


def submit_all(api: httpx.Client, bodies: list[dict[str, Any]]) -> list[str]:
    def one(body: dict[str, Any]) -> str:
        response = api.post("/v1/tasks", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    with ThreadPoolExecutor(max_workers=8) as threads:
        return list(threads.map(one, bodies))


def ended(api: httpx.Client, ids: list[str], types: list[str], timeout_s: float = 240) -> list[dict[str, Any]]:
    """The tasks ``ids`` (of ``types``) once every one of them ended."""
    deadline = time.monotonic() + timeout_s
    wanted = set(ids)
    while True:
        tasks = [t for type_ in types for t in listing(api, type_) if t["id"] in wanted]
        done = [t for t in tasks if t["status"] in ("succeeded", "failed", "cancelled", "expired")]
        if len(done) == len(wanted):
            return tasks
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(done)} of {len(wanted)} tasks of {types} ended after {timeout_s} s")
        time.sleep(1)


def listing(api: httpx.Client, type_: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"group": "team-a", "type": type_, "limit": "200", **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/tasks", params=params).json()
        items += page["items"]
        if not (cursor := page["next_cursor"]):
            return items


def test_each_pools_tasks_run_only_on_that_pools_executors(pools: dict[str, Any], alice: httpx.Client) -> None:
    # Given: pool a serves pa.thumb and pa.plain, pool b serves pb.work, the default pool the demo types
    a_worker, b_worker = worker_of(pools["a"]), worker_of(pools["b"])
    # When: 200 tasks of each pool's types are submitted at once, the demo's echo among them
    a_bodies = [
        {"type": "pa.thumb", "group": "team-a", "payload": {"width": n + 1}}
        if n % 2
        else {"type": "pa.plain", "group": "team-a", "payload": {"n": n}}
        for n in range(TASKS_PER_POOL)
    ]
    b_bodies = [{"type": "pb.work", "group": "team-a", "payload": {"n": n}} for n in range(TASKS_PER_POOL)]
    a_ids, b_ids = submit_all(alice, a_bodies), submit_all(alice, b_bodies)
    (echo_id,) = submit_all(alice, [{"type": "echo", "group": "team-a", "payload": {"x": 1}}])
    # Then: every task succeeds, on its own pool's executor, and the demo type on the default pool's
    for ids, types, worker, pool in (
        (a_ids, ["pa.thumb", "pa.plain"], a_worker, "a"),
        (b_ids, ["pb.work"], b_worker, "b"),
    ):
        tasks = ended(alice, ids, types)
        assert len(tasks) == TASKS_PER_POOL
        assert {t["status"] for t in tasks} == {"succeeded"}, [t["last_error"] for t in tasks if t["last_error"]]
        assert {(t["result"]["pool"], t["result"]["worker"]) for t in tasks} == {(pool, worker)}
    (echo,) = ended(alice, [echo_id], ["echo"])
    assert echo["status"] == "succeeded"
    runs = alice.get(f"/v1/tasks/{echo_id}/runs").json()["items"]
    assert [run["worker"] for run in runs if run["worker"] in (a_worker, b_worker)] == []


def test_the_queues_are_listed_per_pool(pools: dict[str, Any], alice: httpx.Client) -> None:
    stack: Stack = pools["stack"]
    queues = alice.get("/v1/queues").json()["queues"]
    prefix = stack.config.prefix
    assert [(q["pool"], q["priority"], q["name"]) for q in queues] == [
        (pool, priority, f"{prefix}{'' if pool == 'default' else f'-{pool}'}-{priority}.fifo")
        for pool in ("default", "a", "b")
        for priority in ("high", "normal", "low")
    ]


def test_a_type_no_pool_serves_is_422(alice: httpx.Client) -> None:
    response = alice.post("/v1/tasks", json={"type": "pz.nobody", "group": "team-a"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_payload_that_fails_the_declared_model_is_422_with_its_locations(alice: httpx.Client) -> None:
    cases = [
        ({"width": 0}, [["payload", "width"]]),
        ({"width": "wide", "name": 3}, [["payload", "name"], ["payload", "width"]]),
        ({}, [["payload", "width"]]),  # a required field is located at its own name
    ]
    for payload, locations in cases:
        response = alice.post("/v1/tasks", json={"type": "pa.thumb", "group": "team-a", "payload": payload})
        assert response.status_code == 422, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert sorted(e["loc"] for e in response.json()["errors"]) == locations, response.json()
    # A PATCH of the payload is checked the same way
    task_id = alice.post("/v1/tasks", json={"type": "pa.thumb", "group": "team-a", "payload": {"width": 2}}).json()[
        "id"
    ]
    patched = alice.patch(f"/v1/tasks/{task_id}", json={"payload": {"width": -1}})
    assert patched.status_code == 422, patched.text
    assert [e["loc"] for e in patched.json()["errors"]] == [["payload", "width"]]


def test_the_declared_defaults_fill_what_a_submit_leaves_out(alice: httpx.Client) -> None:
    # Given: pa.thumb declares max_retries=1, timeout_s=77, priority="high"
    body: dict[str, Any] = {"type": "pa.thumb", "group": "team-a", "payload": {"width": 3}}
    task = alice.post("/v1/tasks", json=body).json()
    shown = alice.get(f"/v1/tasks/{task['id']}").json()
    assert (shown["retry"]["max_retries"], shown["timeout_s"], shown["priority"]) == (1, 77, "high")
    assert shown["pool"] == "a"
    # A submit's own fields win over the declared defaults
    own = {**body, "timeout_s": 9, "priority": "low", "retry": {"max_retries": 4, "backoff_base_s": 1}}
    task = alice.post("/v1/tasks", json=own).json()
    assert (task["retry"]["max_retries"], task["timeout_s"], task["priority"]) == (4, 9, "low")
    assert task["retry"]["backoff_base_s"] == 1


def test_an_executor_refuses_a_type_a_live_executor_of_another_pool_serves(
    pools: dict[str, Any], modules: Path
) -> None:
    stack: Stack = pools["stack"]
    env = {**stack.env("executor"), **pool_env("b", "pool_a_tasks", modules), "TQ_SCRIPT_ALLOW": ""}
    done = subprocess.run(
        [str(BIN / "tq-executor"), "register-types"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "served by pool 'a'" in line
    assert "Traceback" not in done.stderr


def test_an_executor_of_a_pool_without_queues_refuses_to_start_and_registers_nothing(
    pools: dict[str, Any], modules: Path, alice: httpx.Client
) -> None:
    # Given a misspelled pool: nobody created its queues
    stack: Stack = pools["stack"]
    env = {**stack.env("executor"), **pool_env("gpux", "pool_lost_tasks", modules), "TQ_SCRIPT_ALLOW": ""}
    for command in (["register-types"], []):
        done = subprocess.run([str(BIN / "tq-executor"), *command], env=env, capture_output=True, text=True, timeout=60)
        # Then it refuses in one line saying how to create them
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.strip().splitlines()
        assert "refusing to start: pool 'gpux' has no queues" in line
        assert "TQ_POOLS=gpux tq-bootstrap" in line
        assert "Traceback" not in done.stderr
    # and its type was never registered: submits of it are refused
    refused = alice.post("/v1/tasks", json={"type": "pl.lost", "group": "team-a", "payload": {}})
    assert refused.status_code == 422, refused.text
