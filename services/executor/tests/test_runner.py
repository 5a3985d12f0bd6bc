"""The executor's runner over in-memory fakes, with handlers in real child processes."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest

from tq_executor import isolation
from tq_executor.handlers import Job
from tq_executor.heartbeat import Heartbeat
from tq_executor.isolation import HandlerProcess, Stopped
from tq_executor.runner import Runner
from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import RunStatus, Status
from tqcore.domain.scripts import ScriptAllowList
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.execution import Attempts
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
MODULES = ["sample_handlers"]
TYPES = [
    "t-echo",
    "t-boom",
    "t-opaque",
    "t-nan",
    "t-hang",
    "t-crash",
    "t-count",
    "t-permanent",
    "t-async",
    "t-setups",
    "t-progress",
    "t-bad-setup",
    "unhandled",
    "script",
]

sys.path.insert(0, str(Path(__file__).parent))  # so handler processes can import sample_handlers


class Env:
    def __init__(self) -> None:
        self.store, self.queue, self.clock = InMemoryTaskStore(), RecordingQueue(), FixedClock()
        ids = iter(f"t-{n}" for n in range(999))
        self.registry = InMemoryRegistry(TYPES)
        self.tasks = Tasks(self.store, self.queue, Catalog(self.registry), self.clock, ids.__next__)
        self.attempts = Attempts(self.store, self.queue, self.clock, worker="host:7", lease_s=30, jitter=lambda: 0.0)
        self.runner = Runner(self.attempts, Heartbeat(self.attempts, interval_s=60, lease_s=30), MODULES)

    def submit(self, type_: str, **extra: Any) -> str:
        return self.tasks.submit(SubmitTask(type=type_, group="team-a", **extra), ALICE).task.id

    def deliver_last(self) -> None:
        """Deliver the last sent dispatch as the broker would: through the JSON message body."""
        self.runner.run(json.loads(Dispatch.of(self.queue.sent[-1]).encode())["args"][0])


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    isolation.prepare(MODULES)
    made = Env()
    yield made
    made.runner.close()


def test_a_successful_handler_records_its_result(env: Env) -> None:
    task_id = env.submit("t-echo", payload={"x": 1})
    env.deliver_last()
    task = env.store.get(task_id)
    assert task.status is Status.SUCCEEDED
    assert task.result["payload"] == {"x": 1}
    assert (task.attempts, task.worker) == (1, None)


def test_handlers_run_in_a_child_process_kept_across_tasks(env: Env) -> None:
    first, second = env.submit("t-count"), env.submit("t-count")
    env.deliver_last()
    env.runner.run(json.loads(Dispatch.of(env.store.get(first)).encode())["args"][0])
    a, b = env.store.get(first).result, env.store.get(second).result
    assert a["pid"] == b["pid"]
    assert a["pid"] != __import__("os").getpid()
    assert sorted([a["calls"], b["calls"]])[1] >= 2  # one instance, set up once, served both


def test_a_redelivered_message_does_not_run_the_handler_again(env: Env) -> None:
    task_id = env.submit("t-count")
    env.deliver_last()
    calls = env.store.get(task_id).result["calls"]
    env.deliver_last()  # the same message again (e.g. its delete was lost)
    assert env.store.get(task_id).result["calls"] == calls
    assert [e.type.value for e in env.store.events(task_id)].count("claimed") == 1


@pytest.mark.parametrize(
    ("type_", "error_type", "run_status"),
    [
        ("t-boom", "ZeroDivisionError", RunStatus.FAILED),
        ("t-opaque", "TypeError", RunStatus.FAILED),
        ("t-nan", "ValueError", RunStatus.FAILED),
        ("unhandled", "LookupError", RunStatus.FAILED),
        ("t-crash", "HandlerCrashed", RunStatus.FAILED),
    ],
)
def test_a_failing_attempt_is_recorded_and_retried(
    env: Env, type_: str, error_type: str, run_status: RunStatus
) -> None:
    task_id = env.submit(type_)
    env.deliver_last()
    task = env.store.get(task_id)
    assert task.status is Status.RETRYING
    assert task.last_error is not None
    assert task.last_error.type == error_type
    failed = [e for e in env.store.events(task_id) if e.type.value == "failed"]
    assert failed[-1].data["run_status"] == run_status.value
    assert failed[-1].data["retryable"] is True


def test_a_result_that_is_not_json_fails_the_attempt_with_a_clear_error(env: Env) -> None:
    task_id = env.submit("t-opaque")
    env.deliver_last()
    error = env.store.get(task_id).last_error
    assert error is not None
    assert "the handler's result is not JSON (object)" in error.message


def test_permanent_fails_the_task_after_one_attempt_and_dead_letters_it(env: Env) -> None:
    # Given a task whose handler raises Permanent, with retries left (the type declares 5)
    task_id = env.submit("t-permanent", retry={"max_retries": 5})
    # When its attempt runs
    env.deliver_last()
    # Then the task is failed at once, dead-lettered, and its failed event says no retry follows
    task = env.store.get(task_id)
    assert (task.status, task.attempts) == (Status.FAILED, 1)
    assert task.last_error is not None
    assert (task.last_error.type, task.last_error.message) == ("Permanent", "bad input: no retry can fix it")
    assert [t.id for t in env.queue.dead][-1] == task_id
    events = env.store.events(task_id)
    failed = [e for e in events if e.type.value == "failed"]
    assert [(e.data["run_status"], e.data["retryable"]) for e in failed] == [("failed", False)]
    assert [e.type.value for e in events][-2:] == ["failed", "dead_lettered"]


def test_an_async_handler_runs_on_one_event_loop_in_the_handler_process(env: Env) -> None:
    first, second = env.submit("t-async", payload={"n": 1}), env.submit("t-async", payload={"n": 2})
    env.runner.run(json.loads(Dispatch.of(env.store.get(first)).encode())["args"][0])
    env.deliver_last()
    a, b = env.store.get(first).result, env.store.get(second).result
    assert (a["payload"], b["payload"]) == ({"n": 1}, {"n": 2})
    assert a["pid"] == b["pid"] != __import__("os").getpid()
    assert a["loop"] == b["loop"]


def test_a_class_handler_is_set_up_once_per_handler_process(env: Env) -> None:
    first, second = env.submit("t-setups"), env.submit("t-setups")
    env.runner.run(json.loads(Dispatch.of(env.store.get(first)).encode())["args"][0])
    env.deliver_last()
    a, b = env.store.get(first).result, env.store.get(second).result
    assert a["pid"] == b["pid"]
    assert a["setups"] == b["setups"] == 1


def test_a_class_whose_setup_fails_fails_only_its_own_attempts(env: Env) -> None:
    # Given a class handler whose setup() raises, in the same handler modules as every other type
    broken = env.submit("t-bad-setup")
    env.deliver_last()
    # Then its attempt fails as a retryable error naming the setup's
    task = env.store.get(broken)
    assert task.status is Status.RETRYING
    assert task.last_error is not None
    assert "setup" in task.last_error.message
    assert "model.bin" in task.last_error.message
    assert env.store.events(broken)[-2].data["retryable"] is True
    # and the other types still run in that handler process
    first, second = env.submit("t-setups"), env.submit("t-echo")
    env.runner.run(json.loads(Dispatch.of(env.store.get(first)).encode())["args"][0])
    env.deliver_last()
    assert (env.store.get(first).status, env.store.get(second).status) == (Status.SUCCEEDED, Status.SUCCEEDED)
    assert env.runner.heartbeat._running() == []


class Exploding(HandlerProcess):
    """A handler process whose pipe breaks in a way nothing expects."""

    def run(self, *args: Any, **kwargs: Any) -> isolation.Outcome:
        raise ValueError("a surprise")


def test_an_unexpected_error_running_an_attempt_fails_it_and_stops_its_heartbeat(env: Env) -> None:
    task_id = env.submit("t-echo")
    dispatch = json.loads(Dispatch.of(env.queue.sent[-1]).encode())["args"][0]
    runner = Runner(env.attempts, Heartbeat(env.attempts, interval_s=60, lease_s=30), MODULES)
    runner._local.process = Exploding(MODULES)
    try:
        runner.run(dispatch)
    finally:
        runner.close()
    task = env.store.get(task_id)
    assert task.status is Status.RETRYING
    assert task.last_error is not None
    assert "a surprise" in task.last_error.message
    assert runner.heartbeat._running() == []


class SlowToStart(HandlerProcess):
    """A handler process whose start waits for ``go`` (a fork server still importing heavy handler modules),
    then fails if ``fail``."""

    def __init__(self, modules: list[str], *, fail: bool = False) -> None:
        super().__init__(modules)
        self.starting, self.go, self.fail = threading.Event(), threading.Event(), fail

    def _ensure_child(self) -> Any:
        if self._process is None:
            self.starting.set()
            assert self.go.wait(10)
            if self.fail:
                raise OSError("the fork server is gone")
        return super()._ensure_child()


def test_an_attempt_is_claimed_only_once_its_handler_process_has_started(env: Env) -> None:
    # An executor that dies while its handler process starts must hold no lease: the attempt would be lost, and
    # its task wait for the lease to expire and a backoff, though no handler ever ran.
    task_id = env.submit("t-echo")
    dispatch = json.loads(Dispatch.of(env.queue.sent[-1]).encode())["args"][0]
    runner = Runner(env.attempts, Heartbeat(env.attempts, interval_s=60, lease_s=30), MODULES)
    slow = SlowToStart(MODULES)

    def deliver() -> None:
        runner._local.process = slow
        runner.run(dispatch)

    worker = threading.Thread(target=deliver)
    worker.start()
    try:
        assert slow.starting.wait(10)
        assert env.store.get(task_id).status is Status.QUEUED
    finally:
        slow.go.set()
        worker.join(20)
        runner.close()
    assert env.store.get(task_id).status is Status.SUCCEEDED


def test_a_handler_process_that_cannot_start_claims_nothing_and_leaves_the_message_to_sqs(env: Env) -> None:
    task_id = env.submit("t-echo")
    dispatch = json.loads(Dispatch.of(env.queue.sent[-1]).encode())["args"][0]
    runner = Runner(env.attempts, Heartbeat(env.attempts, interval_s=60, lease_s=30), MODULES)
    runner._local.process = broken = SlowToStart(MODULES, fail=True)
    broken.go.set()
    try:
        with pytest.raises(OSError, match="fork server is gone"):  # the broker nacks: SQS redelivers it later
            runner.run(dispatch)
    finally:
        runner.close()
    assert env.store.get(task_id).status is Status.QUEUED
    assert [e.type.value for e in env.store.events(task_id)] == ["submitted", "queued"]


def test_the_last_progress_report_is_written_before_the_outcome(env: Env) -> None:
    # Given a handler that reports three times within a few milliseconds (the throttle writes the first only)
    task_id = env.submit("t-progress", payload={"fractions": [0.25, 0.5, 1.0]})
    # When it returns
    env.deliver_last()
    # Then the newest report was flushed before the outcome ended the claim, and none made an event
    task = env.store.get(task_id)
    assert task.status is Status.SUCCEEDED
    assert task.progress is not None
    assert (task.progress.fraction, task.progress.message) == (1.0, "at 1.0")
    assert task.progress.at == env.clock.now()
    assert [e.type.value for e in env.store.events(task_id)] == ["submitted", "queued", "claimed", "succeeded"]


def test_progress_shows_on_the_task_while_the_attempt_runs(env: Env) -> None:
    task_id = env.submit("t-progress", payload={"fractions": [0.5], "then_s": 30})
    running = threading.Thread(target=env.deliver_last)
    running.start()
    try:
        deadline = time.monotonic() + 20
        while (task := env.store.get(task_id)).progress is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert task.status is Status.RUNNING
        assert task.progress is not None
        assert (task.progress.fraction, task.progress.message) == (0.5, "at 0.5")
    finally:
        env.tasks.cancel(task_id, ALICE)
        env.runner.heartbeat.beat()  # tells the attempt of the cancel: ctx.sleep returns at once
        running.join(10)
    assert not running.is_alive()
    # and a cancelled attempt's last report stays on the task
    task = env.store.get(task_id)
    assert task.status is Status.CANCELLED
    assert task.progress is not None
    assert task.progress.fraction == 0.5


def test_an_attempt_past_its_timeout_is_killed_and_timed_out(env: Env) -> None:
    task_id = env.submit("t-hang", timeout_s=1)
    env.deliver_last()
    task = env.store.get(task_id)
    assert task.status is Status.RETRYING
    assert task.last_error is not None
    assert task.last_error.type == "TimeoutError"
    assert env.store.events(task_id)[-2].data["run_status"] == "timed_out"
    # and the next attempt gets a fresh handler process
    follow = env.submit("t-echo")
    env.deliver_last()
    assert env.store.get(follow).status is Status.SUCCEEDED


def test_a_stopped_attempt_kills_its_handler_process() -> None:
    isolation.prepare(MODULES)
    process = HandlerProcess(MODULES)
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    with pytest.raises(Stopped):
        process.run(Job("t-x", "t-hang", "g", 1, {}, 60, "host:1"), stop)
    process.close()


def test_a_task_past_its_expiry_is_expired_instead_of_run(env: Env) -> None:
    task_id = env.submit("t-count", expires_at="2000-01-01T00:00:00Z")
    env.deliver_last()
    assert env.store.get(task_id).status is Status.EXPIRED
    assert not [e for e in env.store.events(task_id) if e.type.value == "claimed"]


def test_a_dead_lettered_task_leaves_a_record_in_the_dlq(env: Env) -> None:
    task_id = env.submit("t-boom", retry={"max_retries": 0})
    env.deliver_last()
    assert env.store.get(task_id).status is Status.FAILED
    assert [t.id for t in env.queue.dead][-1] == task_id


def test_the_runner_takes_the_dispatch_the_consumer_decoded(env: Env) -> None:
    # The consumer decodes each body once and hands the actor the Dispatch itself
    task_id = env.submit("t-echo", payload={"x": 1})
    decoded = Dispatch.from_dict(json.loads(Dispatch.of(env.queue.sent[-1]).encode())["args"][0])
    env.runner.run(decoded)
    assert env.store.get(task_id).status is Status.SUCCEEDED


def test_the_dispatch_is_a_message_dramatiq_can_decode(env: Env) -> None:
    env.submit("t-echo", priority="high")
    message = dramatiq.Message.decode(Dispatch.of(env.queue.sent[-1]).encode().encode())
    assert (message.queue_name, message.actor_name) == ("high", "run_high")


def test_a_timed_out_script_leaves_no_process_behind(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    allow = ScriptAllowList.parse({"sleep": {"args": [r"[0-9.]+"]}})
    env.registry.register_types(["script"], by="test", specs={"script": allow.to_json()})
    monkeypatch.setenv("TQ_SCRIPT_ALLOW", allow.to_json())  # what the handler process reads
    isolation.prepare([*MODULES, "tq_executor.script"])
    runner = Runner(env.attempts, Heartbeat(env.attempts, interval_s=60, lease_s=30), [*MODULES, "tq_executor.script"])
    try:
        task_id = env.submit("script", payload={"argv": ["sleep", "31.5"]}, timeout_s=1)
        runner.run(json.loads(Dispatch.of(env.queue.sent[-1]).encode())["args"][0])
        task = env.store.get(task_id)
        assert task.last_error is not None
        assert task.last_error.type == "TimeoutError"
    finally:
        runner.close()
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p) == ["sleep", "31.5"]]


def _cmdline(proc: Path) -> list[str]:
    try:
        parts = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return []
    return [Path(parts[0].decode()).name, *[p.decode() for p in parts[1:-1]]] if len(parts) > 1 else []
