"""Restarting the local stack's processes that exit unexpectedly, with backoff, until a crash loop.

The policy (:class:`RestartPolicy`, :class:`RestartHistory`) is pure and takes its times as arguments; the
:class:`Supervisor` applies it to a stack's processes on each :meth:`Supervisor.check`, with an injected clock.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdev.procs import Proc
    from tqdev.stack import Stack


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart a process that exited, and when to give up on it."""

    #: Delay before the first restart; it doubles with each further restart, up to ``max_delay_s``.
    first_delay_s: float = 0.5
    max_delay_s: float = 10.0
    #: A process that stayed up this long before exiting starts again from ``first_delay_s``.
    stable_s: float = 30.0
    #: A crash loop: a process that exits again after ``max_restarts`` restarts in a row, none up ``stable_s``.
    #: (Counted in a row rather than within a time window, so a service that cannot start is given up on
    #: however slowly it starts and fails on a loaded machine.)
    max_restarts: int = 5


@dataclass
class RestartHistory:
    """One process's restarts under a policy (pure: every time is passed in, in seconds of one clock)."""

    policy: RestartPolicy
    #: Restarts in a row since the process last stayed up for ``stable_s`` (also the backoff's exponent).
    attempt: int = 0

    def on_exit(self, started_at: float, now: float) -> float | None:
        """The delay before restarting a process started at ``started_at`` that exited at ``now``; None: give up."""
        policy = self.policy
        if now - started_at >= policy.stable_s:
            self.attempt = 0
        if self.attempt >= policy.max_restarts:
            return None
        delay_s = min(policy.first_delay_s * 2.0**self.attempt, policy.max_delay_s)
        self.attempt += 1
        return delay_s


class CrashLoop(RuntimeError):
    """Raised when a process exits again after ``max_restarts`` restarts in a row, none up ``stable_s``."""


class Supervisor:
    """Keeps a stack's processes running: each :meth:`check` restarts those whose backoff has passed."""

    def __init__(
        self,
        stack: Stack,
        policy: RestartPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        say: Callable[[str], None] | None = None,
    ) -> None:
        self.stack = stack
        self.policy = policy or RestartPolicy()
        self._clock = clock
        self._say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._histories: dict[str, RestartHistory] = {}
        #: Name -> when its process was (last) seen started.
        self._started_at: dict[str, float] = {}
        #: Name -> (when to restart it, the delay, how it exited), for processes that exited.
        self._due: dict[str, tuple[float, float, str]] = {}

    def check(self) -> None:
        """Notice processes that exited and restart those whose delay has passed; ``CrashLoop`` to give up."""
        now = self._clock()
        for proc in list(self.stack.procs):
            self._started_at.setdefault(proc.name, now)
            if proc.name not in self._due and not proc.alive():
                self._on_exit(proc, now)
        for proc in list(self.stack.procs):
            due = self._due.get(proc.name)
            if due is not None and now >= due[0]:
                del self._due[proc.name]
                new = self.stack.respawn(proc)
                self._started_at[proc.name] = now
                history = self._histories[proc.name]
                self._say(
                    f"tq: {proc.name} (pid {proc.pid}) {due[2]}; restarted as pid {new.pid} after {due[1]:g} s "
                    f"(restart {history.attempt} of at most {self.policy.max_restarts} in a row)"
                )

    def _on_exit(self, proc: Proc, now: float) -> None:
        history = self._histories.setdefault(proc.name, RestartHistory(self.policy))
        status = describe_exit(proc.returncode)
        proc.stop(timeout_s=0)  # reap what is left of its process group (a gateway's workers hold its port)
        delay_s = history.on_exit(self._started_at[proc.name], now)
        if delay_s is None:
            raise CrashLoop(
                f"{proc.name} {status} again after {self.policy.max_restarts} restarts in a row, none up "
                f"{self.policy.stable_s:g} s: a crash loop, giving up"
            )
        self._due[proc.name] = (now + delay_s, delay_s, status)


def describe_exit(returncode: int | None) -> str:
    """``exit code N`` or ``killed by SIGNAME`` for a ``Popen.returncode``."""
    if returncode is None:
        return "running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
