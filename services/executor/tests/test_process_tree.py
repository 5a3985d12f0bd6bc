"""Timeout, cancel, lease loss and the end of every job leave nothing of a handler's process tree running.

A handler starts a grandchild ``sleep 300`` that asks for no parent-death signal and records its pid; whatever
way the attempt ends, that pid is gone within a few seconds.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tq_executor import isolation, sandbox
from tq_executor.handlers import Job
from tq_executor.isolation import HandlerProcess, Stopped
from tqcore.domain.scripts import ScriptAllowList

pytestmark = pytest.mark.unit

MODULES = ["sample_handlers"]
GONE_WITHIN_S = 5.0

sys.path.insert(0, str(Path(__file__).parent))  # so handler processes can import sample_handlers


@pytest.fixture
def process() -> Iterator[HandlerProcess]:
    isolation.prepare(MODULES)
    made = HandlerProcess(MODULES)
    assert made.run(Job("t-0", "t-echo", "team-a", 1, {}, 60, "host:7"), threading.Event()).ok  # started, warm
    yield made
    made.close()


def job(tmp_path: Path, then: str, timeout_s: int = 30, **extra: Any) -> Job:
    payload = {"pid_file": str(tmp_path / "pid"), "then": then, **extra}
    return Job("t-1", "t-grandchild", "team-a", 1, payload, timeout_s, "host:7")


def grandchild_pid(tmp_path: Path) -> int:
    path = tmp_path / "pid"
    deadline = time.monotonic() + 10
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, "the handler never started its grandchild"
        time.sleep(0.02)
    return int(path.read_text())


def once_started(tmp_path: Path, event: threading.Event) -> None:
    """Set ``event`` once the handler has started its grandchild (from a thread of its own)."""

    def wait_then_set() -> None:
        grandchild_pid(tmp_path)
        event.set()

    threading.Thread(target=wait_then_set, daemon=True).start()


def running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a killed child its parent has not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def assert_gone(pid: int) -> None:
    deadline = time.monotonic() + GONE_WITHIN_S
    while running(pid):
        if time.monotonic() > deadline:
            os.kill(pid, 9)  # leave nothing behind, then fail
            raise AssertionError(f"the grandchild {pid} still runs {GONE_WITHIN_S} s after the attempt ended")
        time.sleep(0.05)


def test_a_timeout_kills_the_handlers_subprocesses(process: HandlerProcess, tmp_path: Path) -> None:
    outcome = process.run(job(tmp_path, "hang", timeout_s=2), threading.Event())
    assert outcome.timed_out
    assert_gone(grandchild_pid(tmp_path))


def test_a_cancel_kills_the_subprocesses_of_a_handler_killed_after_the_grace(
    process: HandlerProcess, tmp_path: Path
) -> None:
    cancel = threading.Event()
    once_started(tmp_path, cancel)
    outcome = process.run(job(tmp_path, "hang"), threading.Event(), cancel, cancel_grace_s=0.5)
    assert outcome.cancelled
    assert outcome.error_type == "Cancelled"
    assert_gone(grandchild_pid(tmp_path))


def test_a_handler_that_stops_when_cancelled_leaves_no_subprocess(process: HandlerProcess, tmp_path: Path) -> None:
    cancel = threading.Event()
    once_started(tmp_path, cancel)
    outcome = process.run(job(tmp_path, "wait"), threading.Event(), cancel)
    assert (outcome.cancelled, outcome.ok) == (True, True)  # it returned when asked: its process is kept
    assert_gone(grandchild_pid(tmp_path))


def test_a_lost_lease_or_a_shutdown_kills_the_handlers_subprocesses(process: HandlerProcess, tmp_path: Path) -> None:
    stop = threading.Event()
    once_started(tmp_path, stop)
    with pytest.raises(Stopped):
        process.run(job(tmp_path, "hang"), stop)
    assert_gone(grandchild_pid(tmp_path))


def test_a_background_subprocess_left_by_a_handler_that_returned_is_killed(
    process: HandlerProcess, tmp_path: Path
) -> None:
    outcome = process.run(job(tmp_path, "return"), threading.Event())
    assert outcome.ok
    assert_gone(grandchild_pid(tmp_path))
    # and the handler process itself is kept for the next job
    assert process.run(job(tmp_path, "return"), threading.Event()).ok


@pytest.mark.parametrize("left", [{"orphan": True}, {"setsid": True}], ids=["orphaned", "in-its-own-session"])
def test_a_subprocess_orphaned_or_in_its_own_session_is_killed_after_the_job(
    process: HandlerProcess, tmp_path: Path, left: dict[str, bool]
) -> None:
    # the handler process is the subreaper of its tree: what its subprocesses leave behind comes back to it
    outcome = process.run(job(tmp_path, "return", **left), threading.Event())
    assert outcome.ok, outcome
    assert_gone(grandchild_pid(tmp_path))


def test_a_subprocess_in_its_own_session_dies_with_a_handler_killed_at_its_timeout(
    process: HandlerProcess, tmp_path: Path
) -> None:
    # no script uid to sweep: the handler process dies before its after-job sweep, and its setsid subprocess is
    # reparented to the fork server (a subreaper), whose children the executor kills but for live handlers
    outcome = process.run(job(tmp_path, "hang", timeout_s=2, setsid=True), threading.Event())
    assert outcome.timed_out
    assert_gone(grandchild_pid(tmp_path))
    assert process.run(job(tmp_path, "return"), threading.Event()).ok  # and the next job gets a new handler


def test_a_lost_lease_kills_a_subprocess_in_its_own_session_but_not_another_slots_handler(
    process: HandlerProcess, tmp_path: Path
) -> None:
    other = HandlerProcess(MODULES)  # another worker slot's handler process: a child of the fork server too
    echo = Job("t-0", "t-echo", "team-a", 1, {}, 60, "host:7")
    try:
        before = other.run(echo, threading.Event()).result_json
        stop = threading.Event()
        once_started(tmp_path, stop)
        with pytest.raises(Stopped):
            process.run(job(tmp_path, "hang", setsid=True), stop)
        assert_gone(grandchild_pid(tmp_path))
        assert other.run(echo, threading.Event()).result_json == before  # the same pid: the sweep spared it
    finally:
        other.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to a script uid needs root")
def test_a_scripts_process_that_left_the_group_with_setsid_is_killed_by_the_uid_sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a slot with a script uid, and an allow-list that lets a script start a process in a session of its own
    monkeypatch.setenv("TQ_SCRIPT_ALLOW", ScriptAllowList.parse({"sh": {"rest": ".*"}}).to_json())
    modules = [*MODULES, "tq_executor.script"]
    isolation.prepare(modules)
    uids = sandbox.UidPool(61000, 1000)  # the host's lock directory: never a uid a running executor holds
    uid = uids.take()
    process = HandlerProcess(modules, uid)
    try:
        # When the script returns, leaving that process behind
        argv = ["sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & echo $!"]
        outcome = process.run(Job("t-1", "script", "team-a", 1, {"argv": argv}, 30, "host:7"), threading.Event())
        assert outcome.ok, outcome
        assert outcome.result_json is not None
        escaped = int(json.loads(outcome.result_json)["stdout"])
        # Then it is gone: it ran as the slot's uid, and every process of that uid is killed after the script
        assert_gone(escaped)
    finally:
        process.close()
        uids.close()


def test_a_handler_process_leads_its_own_group_and_is_not_dumpable(process: HandlerProcess, tmp_path: Path) -> None:
    # so a program of the same uid can read neither its /proc/<pid>/environ nor its /proc/<pid>/fd/*
    outcome = process.run(Job("t-1", "t-dumpable", "team-a", 1, {}, 30, "host:7"), threading.Event())
    assert outcome.result_json is not None
    seen = json.loads(outcome.result_json)
    assert seen["dumpable"] == 0
    assert seen["pgid"] == seen["pid"]
