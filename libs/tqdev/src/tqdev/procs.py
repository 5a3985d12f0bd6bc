"""Child processes that are always stopped: each in its own process group, SIGTERM then SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


class Proc:
    """A started child process with its name and log file."""

    def __init__(self, name: str, argv: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            list(argv), env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        """The child's pid (also its process group id)."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """Its exit code (``-N``: killed by signal N), or None while it runs."""
        return self.popen.poll()

    def respawn(self) -> Proc:
        """The same command started again, with the same name, environment and log file (appended to)."""
        return Proc(self.name, self.argv, self.env, self.log_path)

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash, for chaos tests)."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout_s: float = 15) -> None:
        """SIGTERM the group, wait up to ``timeout_s``, then SIGKILL whatever is left."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout_s)
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._log.close()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: object, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    """Poll ``predicate()`` until true, or raise ``TimeoutError`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except Exception:  # noqa: BLE001, S110 - not up yet
            pass
        time.sleep(interval_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
