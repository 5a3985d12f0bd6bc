"""``make run`` supervises: a killed executor comes back and its task finishes; a crash loop stops it (issue 14, 1)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_for_status
from tqdev.procs import free_port
from tqdev.stack import unique_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TQ_LOCAL = Path(sys.executable).parent / "tq-local"
FAST_LEASES = {"TQ_LEASE_S": "6", "TQ_HEARTBEAT_S": "2", "TQ_REAPER_INTERVAL_S": "1"}


class LocalRun:
    """One ``tq-local`` (what ``make run`` starts) on the session's emulator, its output in a file."""

    def __init__(self, emulator: str, tmp_path: Path, env: dict[str, str]) -> None:
        self.prefix, self.port = unique_prefix(), free_port()
        self.out_path = tmp_path / "tq-local.out"
        self.env = {
            **os.environ,
            "AWS_ENDPOINT_URL": emulator,
            "TQ_PREFIX": self.prefix,
            "TQ_GATEWAY_PORT": str(self.port),
            "TQ_RUN_DIR": str(tmp_path / "run"),
            **env,
        }
        with open(self.out_path, "wb") as out:
            self.popen = subprocess.Popen([str(TQ_LOCAL)], env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.out_path.read_text()

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while not (found := re.search(pattern, self.output())):
            assert self.popen.poll() is None, f"tq-local exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"no {pattern!r} within {timeout_s} s:\n{self.output()}"
            time.sleep(0.1)
        return found

    def processes(self) -> set[int]:
        """Every process whose environment names this stack's prefix (the services and their children)."""
        found = set()
        for entry in Path("/proc").iterdir():
            with contextlib.suppress(OSError):
                if entry.name.isdigit() and f"TQ_PREFIX={self.prefix}\0".encode() in (entry / "environ").read_bytes():
                    found.add(int(entry.name))
        return found - {os.getpid(), self.popen.pid}

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        for pid in self.processes():  # never leave a stray process to the next test, even on failure
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def local_run(emulator: str, tmp_path: Path, env: dict[str, str]) -> Iterator[LocalRun]:
    run = LocalRun(emulator, tmp_path, env)
    try:
        yield run
    finally:
        run.stop()


def gateway_shm_dirs(pids: set[int]) -> set[Path]:
    """The shared-memory directories these processes map (the gateway's rate-limit table)."""
    dirs = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            maps = Path(f"/proc/{pid}/maps").read_text()
            dirs |= {Path(m).parent for m in re.findall(r"\S*/tq-gateway-[^/\s]+/\S+", maps)}
    return dirs


def test_make_run_restarts_a_killed_executor_and_its_task_finishes(emulator: str, tmp_path: Path) -> None:
    with local_run(emulator, tmp_path, FAST_LEASES) as run:
        run.wait_for(r"tq: ready on ", 120)
        api = httpx.Client(base_url=f"http://127.0.0.1:{run.port}", headers={"Authorization": "Bearer dev-alice"})
        # Given an 8 s sleep running on one of the two executors
        body = {"type": "sleep", "group": "team-a", "payload": {"seconds": 8}}
        task_id = api.post("/v1/tasks", json=body).json()["id"]
        pid = int(wait_for_status(api, task_id, {"running"}, timeout_s=20)["worker"].rsplit(":", 1)[1])
        assert pid in run.processes()
        shm = gateway_shm_dirs(run.processes())
        assert shm, "the gateway maps its rate-limit table"
        # When that executor is SIGKILLed
        os.kill(pid, signal.SIGKILL)
        # Then the gateway answers throughout (any refused connection fails here), and the task succeeds
        deadline = time.monotonic() + 60
        while (task := api.get(f"/v1/tasks/{task_id}", timeout=5).json())["status"] not in {"succeeded", "failed"}:
            assert time.monotonic() < deadline, task
            time.sleep(0.2)
        assert task["status"] == "succeeded"
        runs = api.get(f"/v1/tasks/{task_id}/runs").json()["items"]
        assert [r["status"] for r in runs] == ["succeeded", "lost"]  # newest first
        # and the executor is back: one restart line naming the killed pid and its successor, which runs
        line = run.wait_for(rf"tq: (executor-\d) \(pid {pid}\) killed by SIGKILL; restarted as pid (\d+) after", 5)
        new_pid = int(line[2])
        assert new_pid != pid
        assert new_pid in run.processes()
        assert "tq-executor" in Path(f"/proc/{new_pid}/cmdline").read_text()
        assert run.output().count("restarted as pid") == 1
        assert api.get("/readyz").status_code == 200
        api.close()
        # When tq-local gets Ctrl-C, it stops all of it, leaving no process and no shared memory behind
        run.popen.send_signal(signal.SIGINT)
        assert run.popen.wait(timeout=60) == 0
    assert run.processes() == set()
    assert not [d for d in shm if d.exists()]


def test_make_run_gives_up_on_a_service_in_a_crash_loop(emulator: str, tmp_path: Path) -> None:
    # Given a scheduler that cannot start: its interval must be above 0
    started = time.monotonic()
    with local_run(emulator, tmp_path, {"TQ_SCHEDULER_INTERVAL_S": "0"}) as run:
        # Then tq-local restarts it five times, backing off 0.5 + 1 + 2 + 4 + 8 s, gives up at its sixth exit in a row
        # and stops everything, exiting non-zero
        assert run.popen.wait(timeout=150) == 1
        took_s = time.monotonic() - started
    output = run.output()
    gave_up = r"tq: scheduler exit code \d+ again after 5 restarts in a row, none up 30 s: a crash loop, giving up"
    assert re.search(gave_up, output)
    delays = re.findall(r"tq: scheduler \(pid \d+\) exit code \d+; restarted as pid \d+ after (\S+) s", output)
    assert delays == ["0.5", "1", "2", "4", "8"]
    assert "tq: stopped" in output
    assert took_s < 120, took_s  # 65 s measured with the machine's load average at 16
    assert run.processes() == set()
