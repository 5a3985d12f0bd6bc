"""Operating-system fences around handler processes and the scripts they run (Linux).

- The executor, its fork server and handler processes are not dumpable, so a program running as the same uid
  can read neither ``/proc/<pid>/environ`` nor ``/proc/<pid>/fd/*`` of theirs.
- A handler process leads its own session and process group, and is a child subreaper (orphans of its tree are
  reparented to it, not to init): a kill takes the group (its subprocesses too), and once a job ends the handler
  process kills and reaps every descendant it has left (a cheap look at its own children, not a scan of /proc).
  The fork server is a subreaper too: when a handler process is killed, what it leaves goes to the fork server,
  and the executor kills every child of the fork server that is not a live handler process (``end_orphans``).
- When the executor runs as root, each worker slot takes a uid of its own from a range for its scripts (held by
  an ``flock`` for the executor's life, so executors on one host never share one); after every job every process
  of that uid is killed, which also catches a program that left the group with ``setsid``, and what it owns in
  the world-writable directories (``SHARED_DIRS``) is removed, so the slot's next tenant cannot read it. Not
  covered: SysV IPC objects (``ipcrm``), and files in other world-writable places of the host.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import pwd
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
#: How many scan-and-kill rounds clean a group up (a process forking while it is killed shows up next round).
KILL_ROUNDS = 50
#: The uid a handler process's scripts run as (set in the handler process; ``None``: the executor's own).
slot_uid: int | None = None


def _prctl(option: int, value: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, value, 0, 0, 0)


def make_undumpable() -> None:
    """Make this process (and what it forks, until an exec) non-dumpable: its ``/proc`` entries are root's."""
    _prctl(PR_SET_DUMPABLE, 0)


def lead_own_group() -> None:
    """Start a new session (and process group) led by this process, so one ``killpg`` reaches its whole tree,
    and become its subreaper, so what its tree leaves behind stays its own to find (``end_descendants``)."""
    with contextlib.suppress(OSError):  # already a group leader
        os.setsid()
    become_subreaper()


def become_subreaper() -> None:
    """Have the orphans of this process's descendants reparented to it rather than to init."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def end_descendants() -> int:
    """SIGKILL and reap every descendant of this process (a subreaper, or they may have gone to init); how many.
    Without ``/proc/<pid>/task/<tid>/children`` (a kernel without it) the rest of its own group is killed instead."""
    ended = 0
    for _ in range(KILL_ROUNDS):
        children = _children()
        if children is None:
            return ended + kill_rest_of_own_group()
        if not children:
            break
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:  # reaped: the orphans of each come back to us before the next round looks
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        ended += len(children)
    return ended


def _children(parent: int | None = None) -> list[int] | None:
    """The children (of every thread) of ``parent`` (this process), or ``None`` if the kernel does not list them."""
    me = os.getpid() if parent is None else parent
    try:
        threads = os.listdir(f"/proc/{me}/task")
        return [int(pid) for tid in threads for pid in Path(f"/proc/{me}/task/{tid}/children").read_text().split()]
    except FileNotFoundError:
        return None


def end_orphans(reaper: int, keep: set[int]) -> int:
    """SIGKILL every running child of ``reaper`` (a subreaper that reaps them) not in ``keep``; how many.
    Repeated until none is left, as the children of each one killed are reparented to ``reaper`` in turn."""
    ended, spared = 0, set(keep)
    for _ in range(KILL_ROUNDS):
        found = [pid for pid in _children(reaper) or [] if pid not in spared and _running(pid)]
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                ended += 1
            except ProcessLookupError:
                pass
            except PermissionError:  # not ours to kill (a set-uid program): do not spin on it
                spared.add(pid)
        time.sleep(0.01)  # a SIGKILLed process dies (and hands its children on) asynchronously
    return ended


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting for its parent to reap it."""
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] != b"Z"


def _stat_fields(pid: int | str) -> list[bytes]:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, pgrp...); empty if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return []
    # ``pid (comm) state ppid pgrp ...``: comm may hold spaces and parentheses, so split after the last ')'.
    return raw[raw.rfind(b")") + 2 :].split()


def kill_group(pgid: int) -> None:
    """SIGKILL the whole process group ``pgid`` (nothing if it is gone)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def kill_rest_of_own_group() -> int:
    """SIGKILL every other process of the group this process leads (none if it leads none); how many."""
    me = os.getpid()
    return kill_group_except(me, keep=me) if os.getpgrp() == me else 0


def kill_group_except(pgid: int, keep: int) -> int:
    """SIGKILL every process of group ``pgid`` but ``keep`` (its leader, still serving); how many were killed."""
    killed = 0
    for _ in range(KILL_ROUNDS):
        found = [pid for pid in _group_members(pgid) if pid != keep]
        if not found:
            break
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(entry.name)
        if len(fields) > 2 and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` (root only): a child takes the uid and signals ``-1``."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only makes two system calls and exits
        code = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)  # every process this uid may signal, except the caller
        except BaseException:  # noqa: BLE001 - nothing may escape a forked child
            code = 1
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


#: Directories every uid may write to: what a script uid leaves there would be the next tenant's to read.
SHARED_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue", "/run/lock")  # noqa: S108 - cleaned, not used
#: How deep ``remove_files_of`` goes into world-writable directories of other owners within them.
SHARED_DEPTH = 4
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def end_uid(uid: int) -> None:
    """End a script uid's run: SIGKILL its processes, then remove the files it left in ``SHARED_DIRS``."""
    kill_uid(uid)
    remove_files_of(uid)


def remove_files_of(uid: int, tops: tuple[str, ...] = SHARED_DIRS) -> int:
    """Remove every entry ``uid`` owns in ``tops`` and in the world-writable directories within them (the only
    places it can have written), never following a symlink nor leaving a top's filesystem; how many."""
    removed = 0
    for top in tops:
        with contextlib.suppress(OSError):
            fd = os.open(top, _DIR_FLAGS)
            try:
                removed += _remove_owned(fd, uid, os.fstat(fd).st_dev, SHARED_DEPTH)
            finally:
                os.close(fd)
    return removed


def _remove_owned(dir_fd: int, uid: int, dev: int, depth: int) -> int:
    removed = 0
    with os.scandir(dir_fd) as scan:
        entries = list(scan)
    for entry in entries:
        with contextlib.suppress(OSError):  # gone meanwhile, or not removable: the rest still goes
            found = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(found.st_mode)
            if found.st_dev != dev:
                continue
            if found.st_uid == uid:
                if is_dir:
                    shutil.rmtree(entry.name, dir_fd=dir_fd)  # fd-based on Linux: follows no symlink inside
                else:
                    os.unlink(entry.name, dir_fd=dir_fd)
                removed += 1
            elif is_dir and found.st_mode & stat.S_IWOTH and depth > 0:
                sub = os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    removed += _remove_owned(sub, uid, dev, depth - 1)
                finally:
                    os.close(sub)
    return removed


def named_uids(base: int, count: int) -> list[str]:
    """The accounts (``name (uid)``) with a passwd entry whose uid lies in ``[base, base + count)``."""
    return [f"{entry.pw_name} ({entry.pw_uid})" for entry in pwd.getpwall() if base <= entry.pw_uid < base + count]


class UidPool:
    """Per-slot script uids from ``[base, base + count)``, each held by an ``flock`` in ``lock_dir``."""

    def __init__(self, base: int, count: int, lock_dir: Path | None = None) -> None:
        self._base, self._count = base, count
        self._dir = lock_dir or Path(tempfile.gettempdir()) / "tq-script-uids"
        self._dir.mkdir(mode=0o700, exist_ok=True)
        if self._dir.stat().st_uid != os.geteuid() or self._dir.stat().st_mode & 0o077:
            raise PermissionError(f"{self._dir} must be this user's own, mode 0700")
        self._held: list[int] = []

    def take(self) -> int:
        """A uid no other slot on this host holds; what a crashed executor left of it (processes, files) is ended."""
        for uid in range(self._base, self._base + self._count):
            fd = os.open(self._dir / f"{uid}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._held.append(fd)
            end_uid(uid)
            return uid
        raise RuntimeError(f"no free script uid in {self._base}..{self._base + self._count - 1}")

    def close(self) -> None:
        """Give every uid back."""
        for fd in self._held:
            os.close(fd)
        self._held.clear()


@contextlib.contextmanager
def private_dir(base: Path | None, uid: int | None) -> Iterator[str]:
    """A fresh directory only its program may use (mode 0700, owned by ``uid`` if given), removed afterwards."""
    path = tempfile.mkdtemp(prefix="tq-script-", dir=base)
    try:
        if uid is not None:
            os.chown(path, uid, uid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
