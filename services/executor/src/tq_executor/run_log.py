"""Run logs on the executor's side: a file per attempt while it runs, one upload once it ended.

The handler process appends the attempt's output to the file (see ``isolation.captured_output``), so what
was printed survives the process being killed (timeout, cancel). Once the attempt ended, the worker thread
reads at most ``max_bytes`` of it (cut with a marker line beyond), stores it with one ``PutObject`` (none when
the attempt printed nothing: most do not, and a PUT per task is real cost), deletes the file and hands back
what the outcome event records. A log that cannot be stored is logged and left out; the outcome never waits
on it or fails because of it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

from tqcore.domain.model import RunLog
from tqcore.domain.task import Task
from tqcore.ports import RunLogStore

log = logging.getLogger(__name__)


def truncation_marker(max_bytes: int) -> bytes:
    """The line that ends a log cut at ``max_bytes``."""
    return f"[tq: log truncated at {max_bytes} bytes]\n".encode()


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's first ``max_bytes`` bytes, plus the truncation marker line if it held more."""
    try:
        with path.open("rb") as file:
            data = file.read(max_bytes + 1)
    except FileNotFoundError:
        return b""
    if len(data) <= max_bytes:
        return data
    kept = data[:max_bytes]
    return kept + (b"" if kept.endswith(b"\n") else b"\n") + truncation_marker(max_bytes)


#: A run-log directory is named ``<prefix><executor pid>@<host name>@<random>``.
DIR_PREFIX = "tq-run-logs-"


def remove_orphans(base: Path) -> int:
    """Remove the run-log directories that executors of this host died without removing (SIGKILL, out of
    memory), so crashes do not pile files up; the number removed. Only this host's: a directory shared with
    another host or container names a pid this one cannot see."""
    removed = 0
    for path in base.glob(f"{DIR_PREFIX}*@*@*"):
        pid, host, _ = path.name.removeprefix(DIR_PREFIX).split("@", 2)
        if host == socket.gethostname() and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class RunLogs:
    """Per-attempt log files in a private directory, stored in a :class:`RunLogStore` when the attempt ends."""

    def __init__(self, store: RunLogStore, *, max_bytes: int, retention_s: float, base_dir: Path | None = None) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._retention_s = retention_s
        base = base_dir or Path(tempfile.gettempdir())
        if removed := remove_orphans(base):
            log.info("removed %d run-log directories of executors that are gone", removed)
        self._dir = Path(tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{os.getpid()}@{socket.gethostname()}@", dir=base))

    @property
    def max_bytes(self) -> int:
        """The bound of a stored log."""
        return self._max_bytes

    def path(self, task: Task) -> Path:
        """Where this attempt's output goes (named by its claim: unique per attempt)."""
        return self._dir / f"{task.id}.{task.claim_seq}.log"

    def collect(self, task: Task) -> RunLog | None:
        """Store the ended attempt's log; what its outcome records, or ``None`` if it could not be stored."""
        path = self.path(task)
        body = read_bounded(path, self._max_bytes)
        self.discard(task)
        if body:
            assert task.claim_seq is not None
            try:
                self._store.put(task.id, task.claim_seq, body)
            except Exception as error:  # noqa: BLE001 - a lost log must never lose the outcome
                log.warning("run log not stored: %s", error, extra={"task_id": task.id, "attempt": task.attempts})
                return None
        return RunLog(len(body), self._retention_s)

    def discard(self, task: Task) -> None:
        """Delete the attempt's file (an attempt that records nothing, e.g. stopped for a lost lease)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(task))

    def close(self) -> None:
        """Remove the directory."""
        shutil.rmtree(self._dir, ignore_errors=True)
