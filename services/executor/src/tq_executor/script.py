"""The ``script`` task type (contract section 5): run an allowed ``argv`` without a shell, fenced in.

Loaded when the executor is configured with an allow-list (``TQ_SCRIPT_ALLOW`` or ``TQ_SCRIPTS_FILE``). The
payload is checked again here, against this executor's own list (it may have changed since the submit): a refused
one fails the attempt and nothing runs. The program gets only the environment the operator lists (plus ``HOME``
and ``TMPDIR`` naming its working directory), a fresh private working directory, ``/dev/null`` as stdin, and — when
the executor runs as root — its worker slot's own unprivileged uid and gid (``sandbox.UidPool``). Its stdout and
stderr go to the run log line by line.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import threading
from collections import deque
from typing import IO, Any

from tq import TaskContext, handler
from tq_executor import sandbox
from tq_executor.isolation import die_with_parent
from tq_executor.settings import ExecutorSettings
from tqcore.domain.scripts import SCRIPT_TYPE, ScriptAllowList

#: The ``script`` result keeps the last this many characters of stdout (the whole output is in the run log).
STDOUT_TAIL_CHARS = 4096
#: How long the output readers may take to drain once the program and its leftovers are gone.
DRAIN_S = 5.0


class ScriptError(Exception):
    """A script could not run, or ran and failed."""


@handler(SCRIPT_TYPE)
class Script:
    """Run ``argv`` if this executor's allow-list accepts it; output goes to the run log."""

    def setup(self) -> None:
        """Read the allow-list and the fences once per process."""
        settings = ExecutorSettings()
        self.allow = settings.script_allow or ScriptAllowList()
        self.env = dict(settings.script_env)
        self.work_dir = settings.script_work_dir
        self.max_procs = settings.script_max_procs

    def teardown(self) -> None:
        """Nothing to release."""

    def __call__(self, ctx: TaskContext) -> Any:
        argv = self.allow.check(ctx.payload)  # InvalidPayload: the attempt fails, nothing runs
        rule = self.allow.programs[argv[0]]
        program = rule.path or shutil.which(argv[0], path=self.env.get("PATH", ""))
        if program is None:
            raise ScriptError(f"{argv[0]!r} is not installed on this executor")
        uid = sandbox.slot_uid
        with sandbox.private_dir(self.work_dir, uid) as cwd:
            code, tail = self._run([program, *argv[1:]], cwd, uid, ctx)
        if code != 0:
            raise ScriptError(f"{argv[0]} exited with status {code}")
        stdout = b"".join(tail).decode("utf-8", "replace")
        return {"exit_code": code, "stdout": stdout[-STDOUT_TAIL_CHARS:]}

    def _run(self, command: list[str], cwd: str, uid: int | None, ctx: TaskContext) -> tuple[int, deque[bytes]]:
        """Run the program to its end, pumping its output into the run log; its exit status and stdout's tail."""
        with subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env={**self.env, "HOME": cwd, "TMPDIR": cwd},
            user=uid,
            group=uid,
            extra_groups=[] if uid is not None else None,
            umask=0o077,
            preexec_fn=lambda: _in_program(self.max_procs if uid is not None else None),
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
                # The executor kills this handler's process group at timeout_s (the program with it); this is
                # only a backstop.
                code = proc.wait(timeout=ctx.timeout_s + 1)
            except subprocess.TimeoutExpired as expired:
                proc.kill()
                raise TimeoutError(f"{command[0]} ran past {ctx.timeout_s} s and was killed") from expired
            finally:
                _end_leftovers(uid)  # a background child would hold the pipes open (and outlive the run)
            for reader in readers:
                reader.join(DRAIN_S)
        return code, tail


def _in_program(max_procs: int | None) -> None:
    """In the forked program, after the uid switch: die with the handler; bound the uid's processes."""
    die_with_parent()
    if max_procs is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (max_procs, max_procs))


def _end_leftovers(uid: int | None) -> None:
    """Kill what the program left running: this handler process's descendants, and every process of its uid
    (whose files in the shared temp directories are removed, so the slot's next tenant cannot read them)."""
    if os.getpgrp() == os.getpid():  # in a handler process (not, say, a handler called in a test's own process)
        sandbox.end_descendants()
    if uid is not None:
        sandbox.end_uid(uid)


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
