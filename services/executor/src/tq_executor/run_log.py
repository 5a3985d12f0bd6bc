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
import fcntl
import logging
import os
import shutil
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


#: A run-log directory is ``<prefix><random>``; it holds a lock file that its executor keeps locked while it lives.
DIR_PREFIX = "tq-run-logs-"
_NEW_PREFIX = ".tq-run-logs-new-"
_LOCK = ".lock"


def remove_orphans(base: Path) -> int:
    """Remove the run-log directories whose executor is gone (a SIGKILL or an out-of-memory kill skips the
    clean-up), so crashes do not pile files up; the number removed.

    Gone means its lock file can be locked: an executor holds that ``flock`` for as long as it lives and the
    kernel drops it when the process dies, whatever pid namespace or host name the executor had.
    """
    removed = 0
    for path in base.glob(f"{DIR_PREFIX}*"):
        try:
            fd = os.open(path / _LOCK, os.O_RDWR)
        except OSError:  # no lock file (not ours), or not ours to open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its executor is running
            os.close(fd)
            continue
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)
        removed += 1
    return removed


def _locked_directory(base: Path) -> tuple[Path, int]:
    """A new run-log directory and the descriptor holding its lock (locked before the directory takes its
    name, so no other executor can see it unlocked)."""
    made = Path(tempfile.mkdtemp(prefix=_NEW_PREFIX, dir=base))
    fd = os.open(made / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    named = base / f"{DIR_PREFIX}{made.name.removeprefix(_NEW_PREFIX)}"
    made.rename(named)
    return named, fd


class RunLogs:
    """Per-attempt log files in a private directory, stored in a :class:`RunLogStore` when the attempt ends."""

    def __init__(self, store: RunLogStore, *, max_bytes: int, retention_s: float, base_dir: Path | None = None) -> None:
        self._store = store
        self._max_bytes = max_bytes
        self._retention_s = retention_s
        base = base_dir or Path(tempfile.gettempdir())
        if removed := remove_orphans(base):
            log.info("removed %d run-log directories of executors that are gone", removed)
        self._dir, self._lock_fd = _locked_directory(base)

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
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
