"""Run logs and cancels in the executor, over in-memory fakes, with handlers in real child processes."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tq_executor import isolation
from tq_executor.handlers import Job
from tq_executor.heartbeat import Heartbeat
from tq_executor.run_log import RunLogs, read_bounded, remove_orphans, truncation_marker
from tq_executor.runner import Runner
from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import RunStatus, Status
from tqcore.domain.runs import project_runs
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryRunLogs, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
MODULES = ["sample_handlers"]
TYPES = ["t-echo", "t-hang", "t-print", "t-flood", "t-stubborn", "t-boom"]
RETENTION_S = 600

sys.path.insert(0, str(Path(__file__).parent))  # so handler processes can import sample_handlers


class Env:
    def __init__(self, max_bytes: int = 1024 * 1024) -> None:
        self.store, self.queue, self.clock = InMemoryTaskStore(), RecordingQueue(), FixedClock()
        ids = iter(f"t-{n}" for n in range(999))
        self.tasks = Tasks(self.store, self.queue, Catalog(InMemoryRegistry(TYPES)), self.clock, ids.__next__)
        self.attempts = Attempts(self.store, self.queue, self.clock, worker="host:7", lease_s=30, jitter=lambda: 0.0)
        self.heartbeat = Heartbeat(self.attempts, interval_s=60, lease_s=30)
        self.logs = InMemoryRunLogs()
        run_logs = RunLogs(self.logs, max_bytes=max_bytes, retention_s=RETENTION_S)
        self.runner = Runner(self.attempts, self.heartbeat, MODULES, run_logs)

    def submit(self, type_: str, **extra: Any) -> str:
        return self.tasks.submit(SubmitTask(type=type_, group="team-a", **extra), ALICE).task.id

    def deliver_last(self) -> None:
        self.runner.run(json.loads(Dispatch.of(self.queue.sent[-1]).encode())["args"][0])

    def start_last(self) -> threading.Thread:
        """Deliver the last dispatch on a worker thread; return once the attempt runs."""
        task_id = self.queue.sent[-1].id
        worker = threading.Thread(target=self.deliver_last)
        worker.start()
        deadline = time.monotonic() + 10
        while self.store.get(task_id).status is not Status.RUNNING:
            assert time.monotonic() < deadline, "the attempt never started"
            time.sleep(0.01)
        return worker

    def log_of(self, task_id: str) -> bytes | None:
        run = project_runs(self.store.events(task_id))[0]
        return self.logs.get(task_id, run.seq)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    isolation.prepare(MODULES)
    made = Env()
    yield made
    made.runner.close()


# ------------------------------------------------------------------------------------------------- run logs
def test_every_kind_of_output_lands_in_the_run_log_and_the_run_records_its_size(env: Env) -> None:
    task_id = env.submit("t-print")
    env.deliver_last()
    body = env.log_of(task_id)
    assert body is not None
    assert sorted(body.decode().splitlines()) == sorted(
        ["from print", "from fd 1", "from stderr", "from ctx.log", "from a subprocess"]
    )
    run = project_runs(env.store.events(task_id))[0]
    assert run.status is RunStatus.SUCCEEDED
    assert run.log_size == len(body)
    assert run.log_expires_at == env.clock.now() + timedelta(seconds=RETENTION_S)
    assert [p.name for p in env.runner.logs._dir.iterdir()] == [".lock"]  # type: ignore[union-attr]  # the log is gone


def test_a_silent_attempt_stores_nothing_and_records_size_zero(env: Env) -> None:
    before = dict(env.logs.logs)
    task_id = env.submit("t-echo")
    env.deliver_last()
    assert env.logs.logs == before  # no PUT
    run = project_runs(env.store.events(task_id))[0]
    assert (run.log_size, run.log_expires_at) == (0, env.clock.now() + timedelta(seconds=RETENTION_S))


def test_a_failed_attempt_keeps_its_log(env: Env) -> None:
    task_id = env.submit("t-flood", payload={"lines": 3})
    env.deliver_last()
    assert env.log_of(task_id) == b"1\n2\n3\n"


def test_a_log_that_cannot_be_stored_never_loses_the_outcome(env: Env) -> None:
    class Broken:
        def put(self, task_id: str, claim_seq: int, body: bytes) -> None:
            raise OSError("S3 is down")

        def get(self, task_id: str, claim_seq: int) -> bytes | None:
            return None

    runner = Runner(env.attempts, env.heartbeat, MODULES, RunLogs(Broken(), max_bytes=100, retention_s=1))
    try:
        task_id = env.submit("t-print")
        runner.run(json.loads(Dispatch.of(env.queue.sent[-1]).encode())["args"][0])
    finally:
        runner.close()
    assert env.store.get(task_id).status is Status.SUCCEEDED
    run = project_runs(env.store.events(task_id))[0]
    assert (run.status, run.log_size, run.log_expires_at) == (RunStatus.SUCCEEDED, None, None)


def test_a_long_log_is_cut_at_the_bound_with_a_marker_line() -> None:
    isolation.prepare(MODULES)
    small = Env(max_bytes=100)
    try:
        task_id = small.submit("t-flood", payload={"lines": 1000})
        small.deliver_last()
        body = small.log_of(task_id)
    finally:
        small.runner.close()
    assert body is not None
    expected = "".join(f"{n}\n" for n in range(1, 1001)).encode()[:100]
    assert body == expected + b"\n" + truncation_marker(100)  # the cut line ends, then the marker
    assert body.endswith(b"[tq: log truncated at 100 bytes]\n")
    assert project_runs(small.store.events(task_id))[0].log_size == len(body)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", b""),
        (b"abc\n", b"abc\n"),
        (b"0123456789", b"0123456789"),  # exactly the bound: whole, no marker
        (b"0123456789X", b"0123456789\n[tq: log truncated at 10 bytes]\n"),  # cut mid-line: the marker on its own
        (b"012345678\nX", b"012345678\n[tq: log truncated at 10 bytes]\n"),
    ],
)
def test_read_bounded(tmp_path: Path, content: bytes, expected: bytes) -> None:
    path = tmp_path / "log"
    path.write_bytes(content)
    assert read_bounded(path, 10) == expected


def test_read_bounded_of_a_file_never_written_is_empty(tmp_path: Path) -> None:
    assert read_bounded(tmp_path / "missing", 10) == b""


# ---------------------------------------------------------------------------------------------------- cancel
def test_a_cancel_stops_the_attempt_at_the_next_beat_and_records_it(env: Env) -> None:
    task_id = env.submit("t-hang")  # waits on ctx.stop for an hour
    worker = env.start_last()
    pid_before = _child_pids()
    # When alice cancels, the task is only marked: the attempt runs until its next heartbeat
    assert env.tasks.cancel(task_id, ALICE).status is Status.RUNNING
    time.sleep(0.2)
    assert worker.is_alive()
    started = time.monotonic()
    env.heartbeat.beat()
    worker.join(5)
    # Then it stopped at once (asked, not killed: ctx.stop), the task and run are cancelled, and who did what
    assert not worker.is_alive()
    assert time.monotonic() - started < 1.0
    task = env.store.get(task_id)
    assert (task.status, task.result) == (Status.CANCELLED, None)
    events = env.store.events(task_id)
    assert [(e.type.value, e.actor) for e in events[-2:]] == [
        ("cancel_requested", "alice"),
        ("cancelled", "executor:host:7"),
    ]
    run = project_runs(events)[0]
    assert (run.status, run.log_size) == (RunStatus.CANCELLED, 0)
    assert _child_pids() == pid_before  # the handler process was kept: it returned when asked
    # and the executor runs the next task at once
    follow = env.submit("t-echo")
    env.deliver_last()
    assert env.store.get(follow).status is Status.SUCCEEDED


def test_a_cancel_that_comes_while_the_handler_process_is_starting_still_stops_it_politely(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a fresh handler process whose handler takes 0.5 s to set up, and a cancel pending when the job goes
    isolation.prepare(MODULES)
    monkeypatch.setenv("TQ_TEST_SETUP_DELAY_S", "0.5")
    process = isolation.HandlerProcess(MODULES)
    cancel = threading.Event()
    cancel.set()
    try:
        started = time.monotonic()
        job = Job("t-1", "t-slow-start", "team-a", 1, {}, 60, "host:7")
        outcome = process.run(job, threading.Event(), cancel)
        # Then the handler is asked once it runs the job (ctx.stop), and returns: the process is kept, not killed
        assert time.monotonic() - started < 0.5 + 1.0
        assert (outcome.cancelled, outcome.ok) == (True, True)
        assert process._process is not None
        assert process._process.is_alive()
    finally:
        process.close()


def test_a_handler_that_ignores_the_stop_is_killed_after_the_grace_and_its_output_kept(env: Env) -> None:
    task_id = env.submit("t-stubborn")
    worker = env.start_last()
    env.tasks.cancel(task_id, ALICE)
    time.sleep(0.3)  # let it print
    started = time.monotonic()
    env.heartbeat.beat()
    worker.join(10)
    assert not worker.is_alive()
    assert isolation.CANCEL_GRACE_S <= time.monotonic() - started < isolation.CANCEL_GRACE_S + 2
    assert env.store.get(task_id).status is Status.CANCELLED
    assert env.log_of(task_id) == b"stubborn started\n"


def test_an_attempt_that_ends_before_the_beat_sees_the_cancel_succeeds(env: Env) -> None:
    # Given a cancel that lands while the attempt is finishing (no beat in between)
    task_id = env.submit("t-echo")
    dispatch = json.loads(Dispatch.of(env.queue.sent[-1]).encode())["args"][0]
    claimed = env.attempts.claim(Dispatch.from_dict(dispatch))
    assert claimed is not None
    env.tasks.cancel(task_id, ALICE)
    # When the attempt records its success
    done = env.attempts.succeed(claimed, {"ok": True})
    # Then success wins, once: one outcome, no cancelled event, the lease is gone
    assert done is not None
    assert (done.status, done.result) == (Status.SUCCEEDED, {"ok": True})
    types = [e.type.value for e in env.store.events(task_id)]
    assert types[-2:] == ["cancel_requested", "succeeded"]
    assert "cancelled" not in types
    # and a late acknowledgement of the cancel (a beat that saw the flag just before) is refused by the fence
    assert env.attempts.cancelled(claimed) is None
    assert env.store.get(task_id).status is Status.SUCCEEDED


def test_a_cancel_that_lands_after_the_outcome_is_refused(env: Env) -> None:
    task_id = env.submit("t-echo")
    env.deliver_last()
    with pytest.raises(Exception, match="cannot be cancelled"):
        env.tasks.cancel(task_id, ALICE)
    assert env.store.get(task_id).status is Status.SUCCEEDED


def test_a_heartbeat_sets_only_the_cancel_flag_and_keeps_the_lease(env: Env) -> None:
    task_id = env.submit("t-echo")
    claimed = env.attempts.claim(Dispatch.of(env.store.get(task_id)))
    assert claimed is not None
    beat = Heartbeat(env.attempts, interval_s=10, lease_s=30)
    active = beat.track(claimed, None)
    beat.beat()
    assert not active.cancel.is_set()
    env.tasks.cancel(task_id, ALICE)
    env.clock.advance(10)
    beat.beat()
    assert active.cancel.is_set()
    assert not active.stop.is_set()  # stop means "record nothing": a cancel is recorded
    assert env.store.get(task_id).lease_expires_at == env.clock.now() + timedelta(seconds=30)
    assert env.attempts.cancelled(claimed) is not None
    beat.untrack(active)


def _child_pids() -> set[int]:
    me = str(os.getpid())
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                found.add(int(entry.name))
    return found


def test_a_running_attempts_log_file_is_kept_near_its_bound_and_still_reads_as_cut(tmp_path: Path) -> None:
    path = tmp_path / "attempt.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for _ in range(50):  # a handler flooding output between the executor's polls
            os.write(fd, b"x" * 999 + b"\n")
            isolation.cap_log(str(path), 2000)
            assert path.stat().st_size <= 2001 + 1000
        os.write(fd, b"tail\n")  # O_APPEND: later writes go on at the cut end, never over the kept head
    finally:
        os.close(fd)
    assert read_bounded(path, 2000) == (b"x" * 999 + b"\n") * 2 + truncation_marker(2000)
    isolation.cap_log("", 10)  # no log file: nothing to do


def test_run_log_directories_of_executors_that_are_gone_are_removed_at_start(tmp_path: Path) -> None:
    # Given the directory a SIGKILLed executor left (its lock file, unlocked), a running executor's (locked), and
    # a directory that only looks like one (no lock file)
    orphan, live, lookalike = (tmp_path / f"tq-run-logs-{name}" for name in ("gone", "running", "other"))
    for directory in (orphan, live, lookalike):
        directory.mkdir()
        (directory / "t-1.1.log").write_text("output\n")
    (orphan / ".lock").touch()
    held = os.open(live / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        # When an executor's run logs start there
        logs = RunLogs(InMemoryRunLogs(), max_bytes=100, retention_s=1, base_dir=tmp_path)
        # Then only the gone executor's directory is removed, and the new one is locked while it is in use
        assert not orphan.exists()
        assert live.exists()
        assert lookalike.exists()
        (made,) = (p for p in tmp_path.iterdir() if p not in (live, lookalike))
        assert made.name.startswith("tq-run-logs-")
        assert remove_orphans(tmp_path) == 0
        assert made.exists()
        logs.close()
        assert sorted(tmp_path.iterdir()) == sorted([live, lookalike])
    finally:
        os.close(held)
    # and once the running one is gone too, the next start removes its directory
    assert remove_orphans(tmp_path) == 1
    assert not live.exists()
