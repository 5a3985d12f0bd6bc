"""A user's own handler package, outside the repo's sources: built into a fresh venv with only the ``tq`` package,
unit-tested there with ``tq.testing``, then run by a local stack that names it in ``TQ_HANDLER_MODULES``
(issue 16, acceptance 1 and 3)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TOKENS, start_stack, wait_for_status
from tqdev.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

HANDLERS = '''
"""acme's task types: a function, a class, an async def, one reporting progress, one failing for good."""

import asyncio
import os

from pydantic import BaseModel, Field

from tq import Permanent, TaskContext, handler


class Double(BaseModel):
    n: int = Field(ge=0)


@handler("acme.double", max_retries=1, timeout_s=20, priority="high", payload=Double)
def double(ctx: TaskContext) -> dict:
    ctx.log(f"doubling {ctx.payload.n}")
    return {"n": ctx.payload.n * 2}


@handler("acme.counter")
class Counter:
    """Counts its setups and calls: one instance per handler process."""

    def setup(self) -> None:
        self.setups = getattr(self, "setups", 0) + 1
        self.calls = 0

    def teardown(self) -> None:
        pass

    def __call__(self, ctx: TaskContext) -> dict:
        self.calls += 1
        return {"pid": os.getpid(), "setups": self.setups, "calls": self.calls}


@handler("acme.fetch")
async def fetch(ctx: TaskContext) -> dict:
    await asyncio.sleep(0.01)
    return {"fetched": ctx.payload["url"], "loop": "asyncio"}


@handler("acme.progress")
def progressing(ctx: TaskContext) -> dict:
    ctx.progress(0.5, "half way")
    if not ctx.sleep(float(ctx.payload["hold_s"])):
        raise RuntimeError("stopped")
    ctx.progress(1.0, "done")
    return {"done": True}


@handler("acme.refuse", max_retries=5)
def refuse(ctx: TaskContext) -> dict:
    ctx.log("looking at the input")
    raise Permanent("bad input: retrying cannot fix it")
'''

UNIT_TESTS = """
from tq.testing import run

import acme_tasks  # noqa: F401  (registers the types)


def test_double():
    assert run("acme.double", {"n": 21}).result == {"n": 42}


def test_double_refuses_a_negative_number():
    assert run("acme.double", {"n": -1}).permanent


def test_counter_is_set_up_once():
    run("acme.counter")
    assert run("acme.counter").result["setups"] == 1


def test_fetch_is_async():
    assert run("acme.fetch", {"url": "u"}).result == {"fetched": "u", "loop": "asyncio"}


def test_progress_reports_and_stops_when_told():
    from tq.testing import context

    assert [p.fraction for p in run("acme.progress", {"hold_s": 0}).progress] == [0.5, 1.0]
    ctx = context("acme.progress", {"hold_s": 60})
    ctx.stop.set()
    outcome = run("acme.progress", ctx=ctx)
    assert not outcome.ok
    assert [p.message for p in outcome.progress] == ["half way"]


def test_refuse_is_permanent():
    assert run("acme.refuse", {"x": 1}).permanent
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``acme-tasks``: a package of its own in a temp dir (not under the repo), depending on ``tq-sdk`` only."""
    root = tmp_path_factory.mktemp("acme")
    (root / "src" / "acme_tasks").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "acme-tasks"
            version = "0.1.0"
            dependencies = ["tq-sdk"]

            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [tool.setuptools.packages.find]
            where = ["src"]
            """
        )
    )
    (root / "src" / "acme_tasks" / "__init__.py").write_text(HANDLERS)
    (root / "tests" / "test_acme.py").write_text(UNIT_TESTS)
    return root


def test_the_package_installs_beside_tq_alone_and_its_tests_pass_with_tq_testing(package: Path) -> None:
    venv = package / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    constraints = ["-c", str(ROOT / "constraints.txt")]
    subprocess.run([*pip, *constraints, str(ROOT / "libs" / "tq"), str(package), "pytest"], check=True, timeout=600)
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout.lower()
    assert "tq-sdk==" in installed
    for heavy in ("boto3", "dramatiq", "tq-core", "tq-executor"):  # the handler API pulls in none of the engine
        assert f"{heavy}==" not in installed
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(package / "tests")],
        capture_output=True,
        text=True,
        cwd=package,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed" in result.stdout


@pytest.fixture(scope="module")
def stack(emulator: str, package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A local stack started as ``PYTHONPATH=<package>/src TQ_HANDLER_MODULES=acme_tasks make run`` starts one: the
    shell's variables, which the stack adds to its demo types (kept for the stack's life: a restarted executor
    reads them again)."""
    path = os.pathsep.join(filter(None, [str(package / "src"), os.environ.get("PYTHONPATH")]))
    with pytest.MonkeyPatch.context() as shell:
        shell.setenv("TQ_HANDLER_MODULES", "acme_tasks")
        shell.setenv("PYTHONPATH", path)
        started = start_stack(emulator, tmp_path_factory.mktemp("stack"), executors=1)
        try:
            yield started
        finally:
            started.stop()


@pytest.fixture
def api(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {TOKENS['alice']}"}, timeout=10) as c:
        yield c


def submit(api: httpx.Client, type_name: str, payload: Any = None, **extra: Any) -> dict[str, Any]:
    response = api.post("/v1/tasks", json={"type": type_name, "group": "team-a", "payload": payload, **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_function_handler_runs_with_its_declared_defaults_and_logs(api: httpx.Client) -> None:
    task = submit(api, "acme.double", {"n": 21})
    assert task["priority"] == "high"
    assert task["timeout_s"] == 20
    assert task["retry"]["max_retries"] == 1
    done = wait_for_status(api, task["id"], {"succeeded", "failed"}, timeout_s=30)
    assert done["status"] == "succeeded"
    assert done["result"] == {"n": 42}
    run = api.get(f"/v1/tasks/{task['id']}/runs").json()["items"][0]
    log = api.get(f"/v1/tasks/{task['id']}/runs/{run['run_id']}/log")
    assert "doubling 21" in log.text
    # a submit may still override a declared default
    assert submit(api, "acme.double", {"n": 1}, priority="low", timeout_s=5)["priority"] == "low"


def test_a_payload_that_fails_the_declared_model_is_refused_at_submit(api: httpx.Client) -> None:
    response = api.post("/v1/tasks", json={"type": "acme.double", "group": "team-a", "payload": {"n": "many"}})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    locations = [error["loc"] for error in response.json()["errors"]]
    assert ["payload", "n"] in locations
    missing = api.post("/v1/tasks", json={"type": "acme.double", "group": "team-a", "payload": {}})
    assert missing.status_code == 422


def test_a_class_handler_is_set_up_once_per_handler_process(api: httpx.Client) -> None:
    ids = [submit(api, "acme.counter")["id"] for _ in range(12)]
    results = [wait_for_status(api, i, {"succeeded", "failed"}, timeout_s=30)["result"] for i in ids]
    assert all(r["setups"] == 1 for r in results)
    by_pid: dict[int, list[int]] = {}
    for r in results:
        by_pid.setdefault(r["pid"], []).append(r["calls"])
    assert any(len(calls) > 1 for calls in by_pid.values()), "some process ran several tasks on one instance"
    for calls in by_pid.values():
        assert sorted(calls) == list(range(1, len(calls) + 1))


def test_an_async_handler_runs(api: httpx.Client) -> None:
    task = submit(api, "acme.fetch", {"url": "https://example.test/x"})
    done = wait_for_status(api, task["id"], {"succeeded", "failed"}, timeout_s=30)
    assert done["result"] == {"fetched": "https://example.test/x", "loop": "asyncio"}


def test_progress_shows_on_the_task_while_it_runs_without_events_or_versions(api: httpx.Client) -> None:
    # Given a task whose handler reports half way, then works a few seconds
    task_id = submit(api, "acme.progress", {"hold_s": 4})["id"]
    assert api.get(f"/v1/tasks/{task_id}").json()["progress"] is None
    # When it runs, GET shows the report (and so does a listing)
    deadline = time.monotonic() + 20
    while (task := api.get(f"/v1/tasks/{task_id}").json())["progress"] is None:
        assert time.monotonic() < deadline, task
        time.sleep(0.05)
    assert task["status"] == "running"
    assert (task["progress"]["fraction"], task["progress"]["message"]) == (0.5, "half way")
    assert task["progress"]["at"].endswith("Z")
    listed = api.get("/v1/tasks", params={"group": "team-a", "type": "acme.progress"}).json()["items"]
    assert [t["progress"]["message"] for t in listed if t["id"] == task_id] == ["half way"]
    # Then the report made no event and no new version
    claimed = api.get(f"/v1/tasks/{task_id}/events").json()["items"]
    assert claimed[-1]["type"] == "claimed"
    assert task["version"] == claimed[-1]["seq"]
    # and the last report, made just before it returned, is on the finished task
    done = wait_for_status(api, task_id, {"succeeded", "failed"}, timeout_s=20)
    assert (done["status"], done["result"]) == ("succeeded", {"done": True})
    assert (done["progress"]["fraction"], done["progress"]["message"]) == (1.0, "done")
    events = api.get(f"/v1/tasks/{task_id}/events").json()["items"]
    assert [e["type"] for e in events] == ["submitted", "queued", "claimed", "succeeded"]


def test_permanent_fails_the_task_after_one_attempt_into_the_dlq(api: httpx.Client) -> None:
    # Given a task whose handler raises Permanent, with five retries left (its type's declared default)
    created = submit(api, "acme.refuse", {"x": 1})
    assert created["retry"]["max_retries"] == 5
    # When it runs, the task fails at once: one attempt, no retry
    done = wait_for_status(api, created["id"], {"failed", "succeeded"}, timeout_s=20)
    assert (done["status"], done["attempts"]) == ("failed", 1)
    assert done["last_error"] == {"type": "Permanent", "message": "bad input: retrying cannot fix it"}
    # Then it is a dead letter, its run failed, and its failed event says no retry follows
    dlq = api.get("/v1/dlq", params={"group": "team-a"}).json()["items"]
    assert created["id"] in [t["id"] for t in dlq]
    runs = api.get(f"/v1/tasks/{created['id']}/runs").json()["items"]
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "failed")]
    events = api.get(f"/v1/tasks/{created['id']}/events").json()["items"]
    assert [e["type"] for e in events][-2:] == ["failed", "dead_lettered"]
    assert events[-2]["data"]["retryable"] is False
    assert "looking at the input" in api.get(f"/v1/tasks/{created['id']}/runs/{runs[0]['run_id']}/log").text


def test_a_retried_failure_says_it_is_retryable(api: httpx.Client) -> None:
    body = {"fail_times": 1}
    task_id = submit(api, "flaky", body, retry={"backoff_base_s": 0.5})["id"]
    assert wait_for_status(api, task_id, {"succeeded", "failed"}, timeout_s=30)["status"] == "succeeded"
    events = api.get(f"/v1/tasks/{task_id}/events").json()["items"]
    assert [e["data"]["retryable"] for e in events if e["type"] == "failed"] == [True]


def test_the_demo_types_still_run_beside_them(api: httpx.Client) -> None:
    task = submit(api, "echo", {"x": 1})
    assert wait_for_status(api, task["id"], {"succeeded", "failed"}, timeout_s=30)["result"] == {"x": 1}
