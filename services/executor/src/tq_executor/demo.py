"""The demo task types of the local stack (contract section 5): echo, sleep, flaky, script.

If ``TQ_DEMO_EXECUTION_LOG`` names a file, every handler call appends ``task_id attempt worker run_id`` to it —
the handlers' own record of what ran, which tests use to prove no attempt runs twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from tq_executor.handlers import TaskContext, handler
from tq_executor.isolation import die_with_parent
from tq_executor.settings import ExecutorSettings


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


@handler("script")
class Script:
    """Run ``argv`` without a shell if ``argv[0]`` is allowed; output goes to the run log."""

    def setup(self) -> None:
        """Read the allow-list once per process."""
        self.allow = frozenset(ExecutorSettings().script_allow)

    def teardown(self) -> None:
        """Nothing to release."""

    def __call__(self, ctx: TaskContext) -> Any:
        _note_execution(ctx)
        argv = _field(ctx, "argv", list)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise DemoError("argv must be a non-empty list of strings")
        if argv[0] not in self.allow:
            raise DemoError(f"{argv[0]!r} is not on the executor's allow-list")
        program = shutil.which(argv[0])
        if program is None:
            raise DemoError(f"{argv[0]!r} is not installed on this executor")
        try:
            done = subprocess.run(
                [program, *argv[1:]],
                capture_output=True,
                text=True,
                # The executor kills this handler's process at timeout_s (and the program with it); this is
                # only a backstop.
                timeout=ctx.timeout_s + 1,
                check=False,
                preexec_fn=die_with_parent,  # killed with its handler process, never orphaned
            )
        except subprocess.TimeoutExpired as expired:
            raise TimeoutError(f"{argv[0]} ran past {ctx.timeout_s} s and was killed") from expired
        for line in done.stdout.splitlines():
            ctx.log(line)
        for line in done.stderr.splitlines():
            ctx.log(f"[stderr] {line}")
        if done.returncode != 0:
            raise DemoError(f"{argv[0]} exited with status {done.returncode}")
        return {"exit_code": done.returncode, "stdout": done.stdout[-4096:]}


def _field(ctx: TaskContext, name: str, kind: type | tuple[type, ...]) -> Any:
    payload = ctx.payload if isinstance(ctx.payload, dict) else {}
    value = payload.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DemoError(f"payload.{name} is missing or has the wrong type")
    return value
