"""The demo task types of the local stack (contract section 5): echo, sleep, flaky (``script`` is core:
``tq_executor.script``).

If ``TQ_DEMO_EXECUTION_LOG`` names a file, every handler call appends ``task_id attempt worker run_id`` to it —
the handlers' own record of what ran, which tests use to prove no attempt runs twice.
"""

from __future__ import annotations

import os
from typing import Any

from tq import TaskContext, handler


def _note_execution(ctx: TaskContext) -> None:
    path = os.environ.get("TQ_DEMO_EXECUTION_LOG")
    if path:
        # One O_APPEND write per line: lines from concurrent processes never interleave.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{ctx.task_id} {ctx.attempt} {ctx.worker} {ctx.run_id}\n".encode())
        finally:
            os.close(fd)


class DemoError(Exception):
    """A demo handler failed on purpose."""


@handler("echo")
def echo(ctx: TaskContext) -> Any:
    """Succeed with the payload."""
    _note_execution(ctx)
    return ctx.payload


@handler("sleep")
def sleep(ctx: TaskContext) -> Any:
    """Sleep ``seconds``, stopping early when told to."""
    _note_execution(ctx)
    seconds = float(_field(ctx, "seconds", (int, float)))
    if not ctx.sleep(seconds):
        raise DemoError("stopped before the sleep ended")
    return {"slept": seconds}


@handler("flaky")
def flaky(ctx: TaskContext) -> Any:
    """Fail while ``attempt <= fail_times``, then succeed."""
    _note_execution(ctx)
    fail_times = int(_field(ctx, "fail_times", int))
    if ctx.attempt <= fail_times:
        raise DemoError(f"flaky: attempt {ctx.attempt} of {fail_times} planned failures")
    return {"attempt": ctx.attempt}


def _field(ctx: TaskContext, name: str, kind: type | tuple[type, ...]) -> Any:
    payload = ctx.payload if isinstance(ctx.payload, dict) else {}
    value = payload.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DemoError(f"payload.{name} is missing or has the wrong type")
    return value
