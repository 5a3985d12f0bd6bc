"""Fixtures for the composed system: a whole local stack on the session's emulator, and API clients."""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tqdev.stack import HIGH_RATE_LIMIT, Stack, StackConfig, unique_prefix

#: moto 5.2.5's TransactWriteItems checks conditions and writes without a lock, so concurrent transactions can
#: both commit there; ministack, like DynamoDB, serialises them. Concurrency races run on ministack only.
MOTO_TRANSACTIONS_NOT_ATOMIC = pytest.mark.skipif(
    os.environ.get("TQ_TEST_EMULATOR") == "moto", reason="moto's TransactWriteItems is not atomic under concurrency"
)

TOKENS = {"alice": "dev-alice", "bob": "dev-bob", "carol": "dev-carol", "admin": "dev-admin"}


def start_stack(
    emulator: str,
    run_dir: Path,
    *,
    executors: int = 2,
    reapers: int = 1,
    env: dict[str, str] | None = None,
    prefix: str | None = None,
    pool_executors: list[dict[str, str]] | None = None,
) -> Stack:
    """A started stack (fresh prefix unless given) with an execution log at ``run_dir/executions.log``, and one
    executor of each pool ``pool_executors`` names (each item: what that executor adds to its environment).

    Its rate limit is ``HIGH_RATE_LIMIT`` unless ``env`` names one: tests drive many requests as one principal.
    """
    config = StackConfig(
        endpoint_url=emulator,
        prefix=prefix or unique_prefix(),
        run_dir=run_dir,
        executors=executors,
        reapers=reapers,
        env={"TQ_DEMO_EXECUTION_LOG": str(run_dir / "executions.log"), **HIGH_RATE_LIMIT, **(env or {})},
        pool_executors=pool_executors or [],
    )
    stack = Stack(config)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack


@contextlib.contextmanager
def running_stack(emulator: str, run_dir: Path, **options: Any) -> Iterator[Stack]:
    """:func:`start_stack` for the ``with`` block, stopped after it whatever happens."""
    started = start_stack(emulator, run_dir, **options)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack shared by a test module (a module may override it with a stack of its own settings)."""
    with running_stack(emulator, tmp_path_factory.mktemp("stack")) as started:
        yield started


@pytest.fixture
def client(stack: Stack) -> Callable[[str], httpx.Client]:
    """``client("alice")``: an HTTP client authenticated as a dev principal."""
    made: list[httpx.Client] = []

    def as_user(user: str) -> httpx.Client:
        c = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {TOKENS[user]}"}, timeout=10)
        made.append(c)
        return c

    yield as_user  # type: ignore[misc]
    for c in made:
        c.close()


def wait_for_status(api: httpx.Client, task_id: str, statuses: set[str], timeout_s: float = 10) -> dict[str, Any]:
    """Poll a task until its status is one of ``statuses``; the task."""
    deadline = time.monotonic() + timeout_s
    while True:
        task: dict[str, Any] = api.get(f"/v1/tasks/{task_id}").json()
        if task["status"] in statuses:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} still {task['status']} after {timeout_s} s")
        time.sleep(0.05)


def executions(stack: Stack) -> list[tuple[str, int]]:
    """(task id, attempt) for every handler call the demo handlers logged."""
    return [(row[0], int(row[1])) for row in _execution_rows(stack)]


def executed_runs(stack: Stack, task_id: str) -> list[str]:
    """The run ids (``<run>.<attempt>``) of every handler call for one task, in the order they started."""
    return [row[3] for row in _execution_rows(stack) if row[0] == task_id]


def _execution_rows(stack: Stack) -> list[list[str]]:
    path = stack.config.run_dir / "executions.log"
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def processes(*argv: str) -> list[int]:
    """Pids of the processes on this host running exactly ``argv`` (its program by base name)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parts = (entry / "cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if parts and [Path(parts[0].decode()).name, *(p.decode() for p in parts[1:])] == list(argv):
                found.append(int(entry.name))
    return found


class ConsoleUser:
    """A console user over plain HTTP (no browser): signs in with a token, keeps the session cookie and the last
    page's CSRF token, and posts forms as a same-origin page does."""

    def __init__(self, stack: Stack, token: str) -> None:
        self.http = httpx.Client(base_url=stack.url, timeout=10, follow_redirects=False)
        self._origin = stack.url.rstrip("/")
        self.csrf = ""
        signed_in = self.post("/ui/session", {"token": token}, csrf=False)
        assert signed_in.status_code == 303, signed_in.text
        self.get("/ui/")

    def get(self, path: str, **params: str) -> httpx.Response:
        """GET a page; remembers its CSRF token."""
        page = self.http.get(path, params=params)
        if found := re.search(r'name="csrf" value="([0-9a-f]+)"', page.text):
            self.csrf = found.group(1)
        return page

    def post(self, path: str, fields: list[tuple[str, str]] | dict[str, str], *, csrf: bool = True) -> httpx.Response:
        """POST a form from one of the console's pages (with the CSRF token unless ``csrf`` is false)."""
        pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
        form: dict[str, list[str]] = {}
        for name, value in pairs + ([("csrf", self.csrf)] if csrf else []):
            form.setdefault(name, []).append(value)
        headers = {"Origin": self._origin, "Sec-Fetch-Site": "same-origin"}
        return self.http.post(path, data=form, headers=headers)

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def console(stack: Stack) -> Iterator[Callable[[str], ConsoleUser]]:
    """``console("alice")``: a console user signed in as a dev principal."""
    made: list[ConsoleUser] = []

    def as_user(user: str) -> ConsoleUser:
        made.append(ConsoleUser(stack, TOKENS[user]))
        return made[-1]

    yield as_user
    for user in made:
        user.close()
