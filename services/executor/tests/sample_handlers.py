"""Handlers for the executor's own tests (imported by name in handler child processes)."""

from __future__ import annotations

import asyncio
import ctypes
import os
import subprocess
import sys
import time
from typing import Any

from tq import Permanent, TaskContext, handler


@handler("t-echo")
def echo(ctx: TaskContext) -> Any:
    return {"payload": ctx.payload, "attempt": ctx.attempt, "pid": os.getpid()}


@handler("t-boom")
def boom(ctx: TaskContext) -> Any:
    return 1 / 0


@handler("t-opaque")
def opaque(ctx: TaskContext) -> Any:
    return object()


@handler("t-nan")
def nan(ctx: TaskContext) -> Any:
    return float("nan")


@handler("t-hang")
def hang(ctx: TaskContext) -> Any:
    ctx.sleep(3600)
    return None


@handler("t-crash")
def crash(ctx: TaskContext) -> Any:
    os._exit(3)


@handler("t-count")
class Counter:
    """Set up once per handler process; counts the calls it served."""

    def setup(self) -> None:
        self.calls = 0

    def teardown(self) -> None:
        pass

    def __call__(self, ctx: TaskContext) -> Any:
        self.calls += 1
        return {"calls": self.calls, "pid": os.getpid()}


@handler("t-slow-start")
class SlowStart:
    """Slow to get ready on its first job in a process: its setup sleeps ``TQ_TEST_SETUP_DELAY_S`` (default 0);
    then it runs until told to stop."""

    def setup(self) -> None:
        time.sleep(float(os.environ.get("TQ_TEST_SETUP_DELAY_S", "0")))

    def teardown(self) -> None:
        pass

    def __call__(self, ctx: TaskContext) -> Any:
        ctx.stop.wait(60)


@handler("t-print")
def printing(ctx: TaskContext) -> Any:
    """Output by every route: Python's print, the raw fd, stderr, ctx.log and a subprocess."""
    print("from print")
    os.write(1, b"from fd 1\n")
    print("from stderr", file=sys.stderr)
    ctx.log("from ctx.log")
    subprocess.run(["echo", "from a subprocess"], check=True)
    return {"lines": int(ctx.payload.get("lines", 0)) if isinstance(ctx.payload, dict) else 0}


@handler("t-flood")
def flood(ctx: TaskContext) -> Any:
    """Print ``lines`` numbered lines."""
    for n in range(1, int(ctx.payload["lines"]) + 1):
        ctx.log(str(n))
    return None


@handler("t-stubborn")
def stubborn(ctx: TaskContext) -> Any:
    """Ignores ctx.stop: has to be killed."""
    print("stubborn started")
    time.sleep(3600)
    return None


@handler("t-grandchild")
def grandchild(ctx: TaskContext) -> Any:
    """Start ``sleep 300`` (no PDEATHSIG; in a session of its own with ``setsid``, orphaned with ``orphan``), write
    its pid to ``pid_file``, then return (``then: return``), hang ignoring the stop (``hang``) or wait for it
    (``wait``)."""
    payload = ctx.payload
    if payload.get("orphan"):  # started by a shell that exits at once: its parent is gone before the job ends
        subprocess.run(["sh", "-c", f"sleep 300 >/dev/null 2>&1 & echo $! > {payload['pid_file']}"], check=True)
    else:
        sleeper = subprocess.Popen(["sleep", "300"], start_new_session=payload.get("setsid", False))
        with open(payload["pid_file"], "w") as file:
            file.write(str(sleeper.pid))
    if payload["then"] == "hang":
        time.sleep(3600)
    elif payload["then"] == "wait":
        ctx.sleep(3600)
    return None


@handler("t-dumpable")
def dumpable(ctx: TaskContext) -> Any:
    """Whether this handler process is dumpable (``prctl(PR_GET_DUMPABLE)``), and the group it is in."""
    return {"dumpable": ctypes.CDLL("libc.so.6").prctl(3, 0, 0, 0, 0), "pgid": os.getpgrp(), "pid": os.getpid()}


@handler("t-permanent", max_retries=5)
def permanent(ctx: TaskContext) -> Any:
    raise Permanent("bad input: no retry can fix it")


@handler("t-async")
async def asynchronous(ctx: TaskContext) -> Any:
    await asyncio.sleep(0.01)
    return {"payload": ctx.payload, "loop": id(asyncio.get_running_loop()), "pid": os.getpid()}


@handler("t-setups")
class Setups:
    """Counts how often its class was set up in this process (once per handler process, whatever the jobs)."""

    setups = 0

    def setup(self) -> None:
        type(self).setups += 1

    def __call__(self, ctx: TaskContext) -> Any:
        return {"setups": type(self).setups, "pid": os.getpid()}


@handler("t-progress")
def progressing(ctx: TaskContext) -> Any:
    """Report each fraction of ``fractions`` (quickly), then sleep ``then_s`` seconds (stopping when told)."""
    for fraction in ctx.payload["fractions"]:
        ctx.progress(fraction, f"at {fraction}")
    ctx.sleep(float(ctx.payload.get("then_s", 0)))
    return {"reported": len(ctx.payload["fractions"])}


@handler("t-bad-setup")
class BadSetup:
    """A class whose ``setup()`` always fails (a missing model file): only its own tasks may fail for it."""

    def setup(self) -> None:
        raise FileNotFoundError("model.bin")

    def __call__(self, ctx: TaskContext) -> Any:
        return None
