"""Script tasks are safe to offer to tenants (issue 14, point 2).

First, the local stack's own allow-list (``tqdev.stack.DEMO_SCRIPTS``): the three attacks of the issue —
``date -f /etc/passwd``, ``date -f /proc/self/environ``, ``date -f /proc/<pid>/fd/1`` of another group's live
run — are refused at submit (422 naming the refused argument), and a PATCH cannot slip them in either.

Then defence in depth: a stack whose operator allowed far too much (``sh``, ``cat``, ``date`` and ``touch`` with
any arguments). The stack runs as root here, so each worker slot runs its scripts as a uid of its own: a script
still cannot read the executor's environment (a canary variable set on every service), nor another group's live
run output (through ``/proc`` or the run-log file), nor write where the executor can; its own environment is only
what the operator listed, and its working directory is private and gone after the run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import processes, running_stack, wait_for_status
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

CANARY = f"canary-{uuid.uuid4().hex}"
PERMISSIVE = {name: {"rest": ".*"} for name in ("sh", "cat", "date", "touch")}
PERMISSIVE_ENV = {"TQ_SCRIPT_ALLOW": json.dumps(PERMISSIVE), "TQ_CANARY_SECRET": CANARY, "TQ_THREADS": "4"}
ENDED = {"succeeded", "failed", "retrying"}


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(emulator, tmp_path_factory.mktemp("stack"), executors=1) as started:
        yield started


def script(api: httpx.Client, group: str, argv: list[str], **extra: object) -> httpx.Response:
    body = {"type": "script", "group": group, "payload": {"argv": argv}, "retry": {"max_retries": 0}, **extra}
    return api.post("/v1/tasks", json=body)


def run_log(api: httpx.Client, task_id: str) -> str:
    run = api.get(f"/v1/tasks/{task_id}/runs").json()["items"][0]
    response = api.get(f"/v1/tasks/{task_id}/runs/{run['run_id']}/log")
    assert response.status_code == 200, response.text
    return response.text


# ------------------------------------------------------------------------------------------- the allow-list
@pytest.mark.parametrize(
    ("argv", "refused"),
    [
        (["date", "-f", "/etc/passwd"], "'-f'"),
        (["date", "-f", "/proc/self/environ"], "'-f'"),
        (["date", "--file=/proc/self/environ"], "'--file=/proc/self/environ'"),
        (["date", "-f/proc/1/fd/1"], "'-f/proc/1/fd/1'"),
        (["cat", "/etc/passwd"], "'cat' is not on the allow-list"),
    ],
)
def test_a_script_naming_a_file_is_refused_at_submit(
    stack: Stack, client: Callable[[str], httpx.Client], argv: list[str], refused: str
) -> None:
    response = script(client("alice"), "team-a", argv)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert refused in problem["detail"]
    assert problem["errors"][0]["loc"][:2] == ["payload", "argv"]
    assert any(refused in e["msg"] for e in problem["errors"])


def test_another_groups_live_run_cannot_be_named(stack: Stack, client: Callable[[str], httpx.Client]) -> None:
    # Given bob's script running in team-b
    bob, alice = client("bob"), client("alice")
    running = script(bob, "team-b", ["sleep", "20"])
    assert running.status_code == 201, running.text
    wait_for_status(bob, running.json()["id"], {"running"})
    # When alice asks for the executor's (and its children's) fd 1, she is refused before anything runs
    for pid in (stack.executors[0].pid, *_children(stack.executors[0].pid)):
        response = script(alice, "team-a", ["date", "-f", f"/proc/{pid}/fd/1"])
        assert response.status_code == 422, response.text
    bob.delete(f"/v1/tasks/{running.json()['id']}")


def test_a_patch_cannot_slip_in_what_a_submit_may_not(stack: Stack, client: Callable[[str], httpx.Client]) -> None:
    alice = client("alice")
    later = script(alice, "team-a", ["sleep", "1"], schedule={"at": "2099-01-01T00:00:00Z"})
    assert later.status_code == 201, later.text
    patched = alice.patch(f"/v1/tasks/{later.json()['id']}", json={"payload": {"argv": ["date", "-f", "/etc/passwd"]}})
    assert patched.status_code == 422, patched.text
    assert patched.json()["errors"][0]["loc"] == ["payload", "argv", 1]
    assert alice.get(f"/v1/tasks/{later.json()['id']}").json()["payload"] == {"argv": ["sleep", "1"]}


def test_an_allowed_script_still_runs(stack: Stack, client: Callable[[str], httpx.Client]) -> None:
    alice = client("alice")
    response = script(alice, "team-a", ["date", "+tq-%Y"])
    task = wait_for_status(alice, response.json()["id"], ENDED, timeout_s=30)
    assert task["status"] == "succeeded", task
    assert task["result"]["stdout"].startswith("tq-20")


# ------------------------------------------------------------------------------------------ defence in depth
@pytest.fixture(scope="module")
def permissive(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = tmp_path_factory.mktemp("permissive")
    with running_stack(emulator, run_dir, executors=1, env=PERMISSIVE_ENV) as started:
        yield started


@pytest.fixture
def api(permissive: Stack) -> Callable[[str], httpx.Client]:
    made: list[httpx.Client] = []

    def as_user(user: str) -> httpx.Client:
        made.append(httpx.Client(base_url=permissive.url, headers={"Authorization": f"Bearer dev-{user}"}, timeout=10))
        return made[-1]

    yield as_user  # type: ignore[misc]
    for c in made:
        c.close()


def ran(api: httpx.Client, argv: list[str]) -> tuple[dict, str]:
    response = script(api, "team-a", argv)
    assert response.status_code == 201, response.text
    task = wait_for_status(api, response.json()["id"], ENDED, timeout_s=30)
    return task, run_log(api, task["id"])


def test_a_script_cannot_read_the_executors_environment(permissive: Stack, api: Callable[[str], httpx.Client]) -> None:
    alice = api("alice")
    executor = permissive.executors[0].pid
    assert CANARY in Path(f"/proc/{executor}/environ").read_text()  # the secret is there to be found
    for argv in (
        ["date", "-f", "/proc/self/environ"],
        ["cat", f"/proc/{executor}/environ"],
        ["sh", "-c", f"cat /proc/{executor}/environ /proc/*/environ"],
        ["sh", "-c", "env"],
    ):
        task, log = ran(alice, argv)
        for secret in (CANARY, "TQ_PREFIX", "AWS_SECRET_ACCESS_KEY"):
            assert secret not in log, argv
            assert secret not in json.dumps(task), argv
    # its own environment is what the operator listed, and where it works
    task, log = ran(alice, ["sh", "-c", "env"])
    names = {line.split("=", 1)[0] for line in log.splitlines() if "=" in line}
    assert names <= {"PATH", "LANG", "HOME", "TMPDIR", "PWD", "SHLVL", "_"}, names


def test_a_script_cannot_read_another_groups_live_run(permissive: Stack, api: Callable[[str], httpx.Client]) -> None:
    alice, bob = api("alice"), api("bob")
    secret = f"secret-{uuid.uuid4().hex}"
    # Given bob's run, live, that printed a secret to its stdout (its run log) and sleeps on
    live = script(bob, "team-b", ["sh", "-c", f"echo {secret}; exec sleep 29.5"])
    assert live.status_code == 201, live.text
    wait_for_status(bob, live.json()["id"], {"running"})
    program = _wait_for_program(["sleep", "29.5"])
    handler = int(_stat(program)[1])  # the program's parent: the handler process, whose fd 1 is the run log
    assert os.stat(f"/proc/{program}").st_uid != 0  # it runs as its slot's own uid
    run_logs = [p for p in Path(tempfile.gettempdir()).glob("tq-run-logs-*/*.log") if live.json()["id"] in p.name]
    assert run_logs
    assert secret in run_logs[0].read_text()
    # When alice's scripts try every way in: /proc fds of the program and of the handler, the log file itself
    for argv in (
        ["date", "-f", f"/proc/{handler}/fd/1"],
        ["cat", f"/proc/{program}/fd/1", f"/proc/{handler}/fd/1", f"/proc/{handler}/fd/2"],
        ["cat", str(run_logs[0])],
        ["sh", "-c", f"cat /proc/*/fd/1 {run_logs[0].parent}/*"],
    ):
        task, log = ran(alice, argv)
        # Then nothing of bob's output reaches alice
        assert secret not in log, argv
        assert secret not in json.dumps(task), argv
    bob.delete(f"/v1/tasks/{live.json()['id']}")


def test_a_script_writes_only_in_its_own_private_directory(
    permissive: Stack, api: Callable[[str], httpx.Client], tmp_path: Path
) -> None:
    alice = api("alice")
    run_log_dir = next(Path(tempfile.gettempdir()).glob("tq-run-logs-*"))
    executors_own = tmp_path / "executors-own"  # a directory the executor (root) may write to
    executors_own.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    for target in (run_log_dir / "planted", executors_own / "planted", permissive.config.run_dir / "planted"):
        task, log = ran(alice, ["touch", str(target)])
        assert task["status"] == "failed", (target, task)
        assert not target.exists()
    # its own directory: writable, 0700, its uid's, and gone after the run
    task, log = ran(alice, ["sh", "-c", "touch here && stat -c '%a %u' . && pwd"])
    assert task["status"] == "succeeded", task
    mode_uid, cwd = log.splitlines()[-2:]
    mode, uid = mode_uid.split()
    assert mode == "700"
    assert int(uid) != 0
    assert not Path(cwd).exists()


def test_what_a_script_leaves_in_the_shared_temp_directories_is_gone_after_its_run(
    permissive: Stack, api: Callable[[str], httpx.Client]
) -> None:
    # the slot's next tenant runs as the same uid: it could read them otherwise
    alice = api("alice")
    left = [Path(top, f"tq-left-{uuid.uuid4().hex}") for top in ("/tmp", "/var/tmp", "/dev/shm")]
    made = f"echo secret > {left[0]} && mkdir {left[1]} && touch {left[1]}/f && ln -s /etc {left[2]}"
    task, log = ran(alice, ["sh", "-c", f"{made} && ls -d {' '.join(map(str, left))}"])
    assert task["status"] == "succeeded", (task, log)
    assert all(str(path) in log for path in left), log  # they were there while it ran
    for path in left:
        assert not os.path.lexists(path), path
    assert Path("/etc/passwd").exists()  # the symlink was removed, not what it points to


def _children(pid: int) -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _stat(int(p.name))[1:2] == [str(pid)]]


def _stat(pid: int) -> list[str]:
    """``state ppid pgrp ...`` of a process (empty if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return raw[raw.rfind(")") + 2 :].split()


def _wait_for_program(argv: list[str]) -> int:
    deadline = time.monotonic() + 15
    while not (found := processes(*argv)):
        assert time.monotonic() < deadline, f"no process {argv} started"
        time.sleep(0.1)
    return found[0]
