"""The handler API of the ``tq`` package, run in-process with ``tq.testing`` (no server)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pydantic import BaseModel

from tq import HandlerRegistry, Permanent, TaskContext
from tq.testing import context, run

pytestmark = pytest.mark.unit


class Resize(BaseModel):
    url: str
    width: int


def test_a_function_handler_returns_its_result_with_its_log_and_progress() -> None:
    handlers = HandlerRegistry()

    @handlers.handler("resize", max_retries=3, timeout_s=60, priority="high", payload=Resize)
    def resize(ctx: TaskContext) -> dict[str, object]:
        ctx.log("starting")
        ctx.progress(0.5, "half way")
        return {"width": ctx.payload.width}

    outcome = run("resize", {"url": "s3://b/k", "width": 40}, handlers=handlers)
    assert outcome.ok
    assert outcome.result == {"width": 40}
    assert outcome.log == ["starting"]
    assert [(p.fraction, p.message) for p in outcome.progress] == [(0.5, "half way")]
    spec = handlers.get("resize")
    assert spec is not None
    assert spec.defaults() == {"retry": {"max_retries": 3}, "timeout_s": 60, "priority": "high"}
    schema = spec.payload_schema()
    assert schema is not None
    assert schema["required"] == ["url", "width"]


def test_a_payload_that_does_not_fit_the_model_is_permanent() -> None:
    handlers = HandlerRegistry()
    handlers.handler("resize", payload=Resize)(lambda ctx: ctx.payload.width)
    outcome = run("resize", {"url": "s3://b/k", "width": "wide"}, handlers=handlers)
    assert outcome.permanent
    assert "width" in str(outcome.error)


def test_permanent_and_other_errors_are_told_apart() -> None:
    handlers = HandlerRegistry()

    @handlers.handler("bad")
    def bad(ctx: TaskContext) -> None:
        raise Permanent("bad input") if ctx.payload.get("bad") else RuntimeError("try again")

    assert run("bad", {"bad": True}, handlers=handlers).permanent
    retried = run("bad", {}, handlers=handlers)
    assert not retried.ok
    assert not retried.permanent
    assert isinstance(retried.error, RuntimeError)
    with pytest.raises(Permanent):
        run("bad", {"bad": True}, handlers=handlers, raises=True)


def test_a_class_handler_is_set_up_once_and_torn_down() -> None:
    handlers = HandlerRegistry()
    calls: list[str] = []

    @handlers.handler("model")
    class Model:
        def setup(self) -> None:
            calls.append("setup")

        def teardown(self) -> None:
            calls.append("teardown")

        def __call__(self, ctx: TaskContext) -> int:
            calls.append("call")
            return int(ctx.attempt)

    assert calls == []  # registering does not instantiate: the executor's parent process never sets up
    assert run("model", handlers=handlers).result == 1
    assert run("model", handlers=handlers, attempt=2).result == 2
    handlers.teardown()
    assert calls == ["setup", "call", "call", "teardown"]


def test_an_async_handler_runs_on_one_event_loop_per_registry() -> None:
    handlers = HandlerRegistry()
    loops: list[asyncio.AbstractEventLoop] = []

    @handlers.handler("fetch")
    async def fetch(ctx: TaskContext) -> dict[str, object]:
        loops.append(asyncio.get_running_loop())
        await asyncio.sleep(0)
        return {"got": ctx.payload}

    assert run("fetch", [1, 2], handlers=handlers).result == {"got": [1, 2]}
    assert run("fetch", None, handlers=handlers).ok
    assert loops[0] is loops[1]
    handlers.teardown()
    # and its loop was never the thread's: closing it leaves code that runs afterwards a current loop to get
    policy_loop = asyncio.get_event_loop_policy().get_event_loop()
    assert policy_loop is not loops[0]


def test_a_result_that_is_not_json_fails_the_run() -> None:
    handlers = HandlerRegistry()
    handlers.handler("obj")(lambda ctx: object())
    outcome = run("obj", handlers=handlers)
    assert not outcome.ok
    assert isinstance(outcome.error, TypeError)
    assert str(outcome.error).startswith("the handler's result is not JSON (object)")
    handlers.handler("nan")(lambda ctx: float("nan"))
    assert isinstance(run("nan", handlers=handlers).error, ValueError)


def test_sleep_returns_false_once_told_to_stop() -> None:
    stop = threading.Event()
    ctx = context("t", stop=stop)
    assert ctx.sleep(0.01) is True
    stop.set()
    assert ctx.sleep(5) is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": 21}, "max_retries"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"priority": "urgent"}, "priority"),
    ],
)
def test_bad_declarations_are_refused_at_import(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HandlerRegistry().handler("t", **kwargs)(lambda ctx: None)  # type: ignore[arg-type]


def test_bad_names_twice_registered_types_and_bad_progress_are_refused() -> None:
    handlers = HandlerRegistry()
    with pytest.raises(ValueError, match="letters"):
        handlers.handler("bad name")(lambda ctx: None)
    handlers.handler("t")(lambda ctx: None)
    with pytest.raises(ValueError, match="twice"):
        handlers.handler("t")(lambda ctx: None)
    ctx = context("t")
    with pytest.raises(ValueError, match="between 0 and 1"):
        ctx.progress(1.5)
    with pytest.raises(TypeError):
        ctx.progress(True)
    ctx.progress(None, "x" * 600)
    assert len(str(ctx.progress_reports[0].as_dict()["message"])) == 500


def test_a_failing_setup_fails_only_its_own_type_and_is_tried_again() -> None:
    handlers = HandlerRegistry()
    tries: list[str] = []

    @handlers.handler("broken")
    class Broken:
        def setup(self) -> None:
            tries.append("setup")
            if len(tries) == 1:
                raise RuntimeError("no model file")

        def __call__(self, ctx: TaskContext) -> str:
            return "ready"

    @handlers.handler("fine")
    class Fine:
        def __call__(self, ctx: TaskContext) -> str:
            return "fine"

    assert run("fine", handlers=handlers).result == "fine"  # the other class is never set up for it
    assert tries == []
    failed = run("broken", handlers=handlers)
    assert not failed.ok
    assert not failed.permanent  # retryable: the next attempt tries setup() again
    assert "setup" in str(failed.error)
    assert "no model file" in str(failed.error)
    assert run("broken", handlers=handlers).result == "ready"
    assert tries == ["setup", "setup"]
    handlers.teardown()
