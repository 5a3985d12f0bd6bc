"""The executor's runner over in-memory fakes: claim, call the handler, record the outcome."""

from __future__ import annotations

import json
from typing import Any

import dramatiq
import pytest

from tq_executor.handlers import HandlerRegistry, TaskContext
from tq_executor.runner import Runner
from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import RunStatus, Status
from tqcore.execution import Attempts
from tqcore.service import Tasks, TypeCatalog
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))


class Counter:
    """A stateful handler: set up once, counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.ready = False

    def setup(self) -> None:
        self.ready = True

    def teardown(self) -> None:
        self.ready = False

    def __call__(self, ctx: TaskContext) -> Any:
        assert self.ready
        self.calls += 1
        return {"calls": self.calls}


@pytest.fixture
def env() -> tuple[Tasks, InMemoryTaskStore, RecordingQueue, Runner, HandlerRegistry]:
    store, queue, clock = InMemoryTaskStore(), RecordingQueue(), FixedClock()
    handlers = HandlerRegistry()
    handlers.register("echo", lambda ctx: ctx.payload)
    handlers.register("boom", lambda ctx: 1 / 0)
    handlers.register("opaque", lambda ctx: object())
    handlers.register("slow", lambda ctx: (_ for _ in ()).throw(TimeoutError("ran past 1 s")))
    handlers.register("count", Counter)
    handlers.register("huge", lambda ctx: "x" * 500_000)
    handlers.setup()
    types = [*handlers.types, "unhandled"]
    tasks = Tasks(store, queue, TypeCatalog(InMemoryRegistry(types)), clock, iter(f"t-{n}" for n in range(99)).__next__)
    runner = Runner(Attempts(store, clock, worker="host:7", lease_s=30, jitter=lambda: 0.0), handlers)
    return tasks, store, queue, runner, handlers


def run_last(queue: RecordingQueue, runner: Runner) -> None:
    """Deliver the last sent dispatch as the broker would: through the JSON message body."""
    runner.run(json.loads(Dispatch.of(queue.sent[-1]).encode())["args"][0])


def submit(tasks: Tasks, type_: str, **extra: Any) -> str:
    return tasks.submit(SubmitTask(type=type_, group="team-a", **extra), ALICE).task.id


def test_a_successful_handler_records_its_result(env: Any) -> None:
    tasks, store, queue, runner, _ = env
    task_id = submit(tasks, "echo", payload={"x": 1})
    run_last(queue, runner)
    task = store.get(task_id)
    assert (task.status, task.result, task.attempts, task.worker) == (Status.SUCCEEDED, {"x": 1}, 1, None)


def test_a_redelivered_message_does_not_run_the_handler_again(env: Any) -> None:
    tasks, store, queue, runner, handlers = env
    task_id = submit(tasks, "count")
    run_last(queue, runner)
    run_last(queue, runner)  # the same message again (e.g. its delete was lost)
    assert store.get(task_id).result == {"calls": 1}
    assert handlers.get("count").calls == 1


@pytest.mark.parametrize(
    ("type_", "error_type", "run_status"),
    [
        ("boom", "ZeroDivisionError", RunStatus.FAILED),
        ("opaque", "TypeError", RunStatus.FAILED),
        ("slow", "TimeoutError", RunStatus.TIMED_OUT),
        ("unhandled", "LookupError", RunStatus.FAILED),
    ],
)
def test_a_failing_attempt_is_recorded_and_retried(
    env: Any, type_: str, error_type: str, run_status: RunStatus
) -> None:
    tasks, store, queue, runner, _ = env
    task_id = submit(tasks, type_)
    run_last(queue, runner)
    task = store.get(task_id)
    assert task.status is Status.RETRYING
    assert task.last_error is not None
    assert task.last_error.type == error_type
    failed = [e for e in store.events(task_id) if e.type.value == "failed"]
    assert failed[-1].data["run_status"] == run_status.value


def test_class_handlers_are_set_up_once_and_torn_down(env: Any) -> None:
    _, _, _, _, handlers = env
    counter = handlers.get("count")
    assert counter.ready
    handlers.teardown()
    assert not counter.ready


def test_registering_a_type_twice_is_refused() -> None:
    handlers = HandlerRegistry()
    handlers.register("echo", lambda ctx: None)
    with pytest.raises(ValueError, match="twice"):
        handlers.register("echo", lambda ctx: None)


def test_the_dispatch_is_a_message_dramatiq_can_decode(env: Any) -> None:
    tasks, _, queue, _, _ = env
    submit(tasks, "echo", priority="high")
    message = dramatiq.Message.decode(Dispatch.of(queue.sent[-1]).encode().encode())
    assert (message.queue_name, message.actor_name) == ("high", "run_high")


def test_a_task_past_its_expiry_is_expired_instead_of_run(env: Any) -> None:
    tasks, store, queue, runner, handlers = env
    task_id = submit(tasks, "count", expires_at="2000-01-01T00:00:00Z")
    run_last(queue, runner)
    assert store.get(task_id).status is Status.EXPIRED
    assert handlers.get("count").calls == 0


def test_a_result_too_large_to_store_fails_the_attempt_clearly(env: Any) -> None:
    tasks, store, queue, runner, _ = env
    task_id = submit(tasks, "huge")
    run_last(queue, runner)
    task = store.get(task_id)
    assert task.status is Status.RETRYING
    assert task.last_error is not None
    assert task.last_error.type == "ResultTooLarge"
