"""The demo task types of the local stack (contract section 5): echo, sleep, flaky, script.

If ``TQ_DEMO_EXECUTION_LOG`` names a file, every handler call appends ``task_id attempt worker run_id`` to it —
the handlers' own record of what ran, which tests use to prove no attempt runs twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections import deque
from typing import IO, Any

from tq_executor.handlers import TaskContext, handler
from tq_executor.isolation import die_with_parent
from tq_executor.settings import ExecutorSettings

#: The ``script`` result keeps the last this many characters of stdout (the whole output is in the run log).
STDOUT_TAIL_CHARS = 4096


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
        # Both streams are read line by line as the program runs and appended to the run log (stderr lines
        # marked), so a program killed at its timeout or by a cancel leaves what it printed so far.
        with subprocess.Popen(
            [program, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=die_with_parent,  # killed with its handler process, never orphaned
        ) as proc:
            assert proc.stdout is not None
            assert proc.stderr is not None
            tail: deque[bytes] = deque()
            readers = [
                threading.Thread(target=_pump, args=(proc.stdout, ctx, b"", tail), daemon=True),
                threading.Thread(target=_pump, args=(proc.stderr, ctx, b"[stderr] ", None), daemon=True),
            ]
            for reader in readers:
                reader.start()
            try:
                # The executor kills this handler's process at timeout_s (and the program with it); this is
                # only a backstop.
                code = proc.wait(timeout=ctx.timeout_s + 1)
            except subprocess.TimeoutExpired as expired:
                proc.kill()
                raise TimeoutError(f"{argv[0]} ran past {ctx.timeout_s} s and was killed") from expired
            for reader in readers:
                reader.join()
        if code != 0:
            raise DemoError(f"{argv[0]} exited with status {code}")
        stdout = b"".join(tail).decode("utf-8", "replace")
        return {"exit_code": code, "stdout": stdout[-STDOUT_TAIL_CHARS:]}


def _pump(stream: IO[bytes], ctx: TaskContext, mark: bytes, tail: deque[bytes] | None) -> None:
    """Copy a program's stream to the run log line by line; keep the last few KiB in ``tail``."""
    kept = 0
    for line in stream:
        ctx.write_log(mark + line if line.endswith(b"\n") else mark + line + b"\n")
        if tail is not None:
            tail.append(line)
            kept += len(line)
            while kept - len(tail[0]) >= STDOUT_TAIL_CHARS:
                kept -= len(tail.popleft())


def _field(ctx: TaskContext, name: str, kind: type | tuple[type, ...]) -> Any:
    payload = ctx.payload if isinstance(ctx.payload, dict) else {}
    value = payload.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DemoError(f"payload.{name} is missing or has the wrong type")
    return value
