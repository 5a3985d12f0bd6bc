"""Handlers run in child processes, so an attempt can be stopped: a thread cannot be killed, a process can.

Each worker thread owns one long-lived child (started from a clean ``forkserver``, with the handler modules
preloaded, each class handler set up on its first job in the child). The thread sends a job down a pipe and
waits for the outcome; past ``timeout_s``, or when told to stop (lease lost, shutdown), it SIGKILLs the child and
starts a new one for the next job. When the task is cancelled it first asks (``SIGUSR1`` sets the handler's
``ctx.stop``; sent again at every poll, as a child still starting or not yet running the job drops it) and kills only if
the handler has not returned within ``CANCEL_GRACE_S``. Children die with their executor: each asks the kernel for
SIGKILL when its parent (the fork server, which exits when the executor does) goes away, so no
handler outlives the process holding its lease. Each child leads its own process group: every kill takes the
whole group (the subprocesses a handler started too), then every child of the fork server (a subreaper: what
left the group with ``setsid`` is reparented to it when the handler dies) that is not a live handler process,
and, for a slot with a script uid, every process of that uid; after every job the child itself kills whatever
the job left running (``sandbox.end_descendants``), so a handler's ``setup()`` must not keep subprocesses across
jobs.

While a job runs, the child's fds 1 and 2 point at the attempt's log file (``O_APPEND``), so whatever the
handler, C code or a subprocess prints lands there, and survives the child being killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from typing import Any, NoReturn, Protocol

from tq import Permanent, Progress, TaskContext, registry
from tq.handlers import load_modules, result_json
from tq_executor import sandbox
from tq_executor.handlers import Job

log = logging.getLogger(__name__)

#: How often the waiting thread looks at its stop flag and the clock.
POLL_S = 0.05
#: Error messages are cut to this many characters in ``last_error``.
MAX_ERROR_CHARS = 2000
#: How long a cancelled handler may take to return after ``ctx.stop`` is set before its process is killed.
CANCEL_GRACE_S = 2.0
#: The signal that sets the running handler's ``ctx.stop`` in the child.
STOP_SIGNAL = signal.SIGUSR1  # ignored in the fork server: see forkserver_init
#: Messages read from the child at most per poll (progress reports may come faster than they are written).
MAX_MESSAGES_PER_POLL = 100


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended in the child: a JSON result, or an error (``timed_out`` for timeouts)."""

    result_json: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    timed_out: bool = False
    #: The attempt was told to stop because its task was cancelled (whatever the handler then returned).
    cancelled: bool = False
    #: The handler raised ``tq.Permanent``: retrying cannot help, the task fails at once.
    permanent: bool = False

    @property
    def ok(self) -> bool:
        """True when the handler returned a JSON result."""
        return self.error_type is None


class ProgressSink(Protocol):
    """Where the waiting thread passes the handler's progress reports (``runner.ProgressReporter``)."""

    def report(self, progress: Progress) -> None:
        """The handler reported ``progress`` (recorded only: a write must never hold back the poll loop)."""


class Stopped(Exception):
    """The attempt was stopped from outside (its lease was lost, or the executor is shutting down)."""


class HandlerCrashed(Exception):
    """The child running the handler died (a segfault, an out-of-memory kill, ``os._exit``)."""


class HandlerProcess:
    """One child process that runs jobs one at a time; killed and replaced when a job must stop."""

    def __init__(self, modules: list[str], uid: int | None = None) -> None:
        self._modules = modules
        #: The uid this slot's scripts run as (``None``: the executor's own).
        self._uid = uid
        self._process: Any = None
        self._conn: Connection | None = None

    def run(
        self,
        job: Job,
        stop: threading.Event,
        cancel: threading.Event | None = None,
        *,
        cancel_grace_s: float = CANCEL_GRACE_S,
        progress: ProgressSink | None = None,
    ) -> Outcome:
        """Run ``job`` in the child, waiting at most ``job.timeout_s``; raises ``Stopped`` or ``HandlerCrashed``.

        ``cancel`` asks the handler to stop (``ctx.stop``), then kills it after ``cancel_grace_s``; the outcome
        is then ``cancelled``. An outcome that arrived before the cancel was acted on is returned as it is. The
        handler's progress reports go to ``progress`` as they arrive.
        """
        conn = self._ensure_child()
        try:
            conn.send(job)
        except OSError:  # the child died between jobs (a broken pipe)
            self._crashed()
        deadline = time.monotonic() + job.timeout_s
        kill_at: float | None = None  # set once the handler was asked to stop for a cancel
        while True:
            outcome = self._receive(conn, progress)
            if outcome is not None:
                return outcome if kill_at is None else replace(outcome, cancelled=True)
            if stop.is_set():
                self.kill()
                raise Stopped(f"attempt {job.attempt} of {job.task_id} was stopped")
            if cancel is not None and cancel.is_set():
                if kill_at is None:
                    kill_at = time.monotonic() + cancel_grace_s
                # Asked again at every poll: a child still starting, or not yet running the job, drops the signal.
                if self._process.is_alive():  # not a pid the fork server reaped (and the kernel may reuse)
                    with contextlib.suppress(OSError):
                        os.kill(self._process.pid, STOP_SIGNAL)
            if kill_at is not None and time.monotonic() > kill_at:
                self.kill()
                return Outcome(
                    error_type="Cancelled",
                    error_message=f"cancelled; the handler did not stop within {cancel_grace_s} s and was killed",
                    cancelled=True,
                )
            if time.monotonic() > deadline:
                self.kill()
                return Outcome(
                    error_type="TimeoutError",
                    error_message=f"ran past its timeout of {job.timeout_s} s and was killed",
                    timed_out=True,
                )
            if not self._process.is_alive():
                return self._crashed()
            cap_log(job.log_path, job.log_max_bytes)

    def start(self) -> None:
        """Start the child now unless it runs (the next job then waits for no process start).

        The first start waits for the fork server to have imported the handler modules: seconds with heavy
        dependencies or on a loaded host.
        """
        self._ensure_child()

    def _receive(self, conn: Connection, progress: ProgressSink | None) -> Outcome | None:
        """The job's outcome if the child sent it within a poll; progress reports read on the way go to
        ``progress`` (a bounded number per poll, so a flood of them cannot hold back the checks)."""
        if not conn.poll(POLL_S):
            return None
        for _ in range(MAX_MESSAGES_PER_POLL):
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the child died (a reset or broken pipe as well as a clean EOF)
                return self._crashed()
            if isinstance(message, Outcome):
                return message
            if isinstance(message, Progress) and progress is not None:
                progress.report(message)
            if not conn.poll(0):
                break
        return None

    def _crashed(self) -> NoReturn:
        code = self._process.exitcode
        self.kill()  # what it started may outlive it in its group
        raise HandlerCrashed(f"the handler process died (exit code {code})")

    def _ensure_child(self) -> Connection:
        if self._process is None or not self._process.is_alive():
            self._forget()
            context = multiprocessing.get_context("forkserver")
            parent, child = context.Pipe()
            self._process = context.Process(
                target=child_main, args=(child, self._modules, self._uid, _settings_environ()), daemon=True
            )
            with _handlers_lock:  # a sweep must not take it for an orphan before it is listed
                self._process.start()
                _handlers.add(self._process.pid)
            child.close()
            self._conn = parent
        assert self._conn is not None
        return self._conn

    def kill(self) -> None:
        """SIGKILL the child, its process group and its slot's script uid (the next job starts a new child)."""
        if self._process is not None:
            # The child leads its group: its subprocesses go with it (and outlive it there if it died first).
            sandbox.kill_group(self._process.pid)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
            _end_orphans()  # what left the group with setsid went to the fork server when the child died
        if self._uid is not None:
            sandbox.end_uid(self._uid)  # scripts that left the group with setsid, and their files in /tmp
        self._forget()

    def close(self) -> None:
        """Ask the child to tear its handlers down and exit; kill it if it does not."""
        if self._conn is not None and self._process is not None and self._process.is_alive():
            with contextlib.suppress(OSError, BrokenPipeError):
                self._conn.send(None)
            self._process.join(5)
        self.kill()

    def _forget(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            with _handlers_lock:
                _handlers.discard(self._process.pid)
        self._process, self._conn = None, None


#: The pids of the handler processes alive now (of every worker thread): the fork server's other children are
#: orphans. Starting a handler process and sweeping the orphans hold ``_handlers_lock``.
_handlers: set[int] = set()
_handlers_lock = threading.Lock()


def _end_orphans() -> None:
    """Kill every child of the fork server (a subreaper) that is not a live handler process."""
    server = getattr(forkserver._forkserver, "_forkserver_pid", None)  # CPython's, set since 3.4
    if server is not None:
        with _handlers_lock:
            sandbox.end_orphans(server, _handlers)


def cap_log(path: str, max_bytes: int) -> None:
    """Keep a running attempt's log file from filling the disk: past ``max_bytes`` it is cut back to
    ``max_bytes + 1`` (so the stored copy still ends with the truncation marker); the handler's ``O_APPEND``
    writes go on at the new end, so the file stays within a poll's worth of output of the bound."""
    if not path or max_bytes <= 0:
        return
    with contextlib.suppress(OSError):
        if os.stat(path).st_size > max_bytes + 1:
            os.truncate(path, max_bytes + 1)


#: Imported once by the fork server, before the handler modules. ``tq_executor.main`` too: every child re-runs the
#: executor's main script (or module) as ``__mp_main__``, and its imports (boto3, Dramatiq) took each handler
#: process about 0.5 s to start on an idle host, several seconds on a loaded one, when the server had not.
FORK_SERVER_PRELOAD = [
    "tq_executor.forkserver_init",
    "tq_executor.isolation",
    "tq_executor.sandbox",
    "tq_executor.main",
]


def prepare(modules: list[str]) -> None:
    """Start the fork server now, with the handler modules preloaded, so each child starts warm and fast."""
    multiprocessing.get_context("forkserver").set_forkserver_preload([*FORK_SERVER_PRELOAD, *modules])
    forkserver.ensure_running()


def warm_up(modules: list[str]) -> float:
    """Wait until the fork server :func:`prepare` started has imported the handler modules (a handler process
    starts and is closed); how long it took. An executor that receives work before then would hold messages,
    and with them tasks, that it cannot start for as long as those imports take."""
    started = time.monotonic()
    probe = HandlerProcess(modules)
    try:
        probe.start()
    finally:
        probe.close()
    return time.monotonic() - started


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent exits."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def release_fork_server() -> None:
    """Close this child's copy of the fork server's "alive" pipe, so the server exits when the executor does.

    CPython hands every forkserver child the write end of that pipe, and the server stops only at its EOF: while
    a child holds it, a SIGKILLed executor's fork server lives on, and so (``die_with_parent`` waits for the
    server's exit) do its handlers. A handler never starts processes through the fork server, so it needs none.
    """
    fd = getattr(forkserver._forkserver, "_forkserver_alive_fd", None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)
        forkserver._forkserver._forkserver_alive_fd = None  # type: ignore[attr-defined]


def _settings_environ() -> dict[str, str]:
    """The executor's ``TQ_*`` settings as they are now (the fork server's copy dates from its start)."""
    return {name: value for name, value in os.environ.items() if name.startswith("TQ_")}


def child_main(
    conn: Connection, modules: list[str], uid: int | None = None, environ: dict[str, str] | None = None
) -> None:
    """The child's loop: run each job, send back its outcome, until told to stop (``None``)."""
    die_with_parent()
    release_fork_server()
    sandbox.lead_own_group()
    sandbox.make_undumpable()
    sandbox.slot_uid = uid
    os.environ.update(environ or {})
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the executor, which stops us itself
    signal.signal(STOP_SIGNAL, _stop_current)
    # Line-buffered, so what Python code prints reaches the log file even if the process is killed.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    load_modules(modules)  # a class handler is set up on its first job here (a failing setup fails that job)
    send_lock = threading.Lock()  # the outcome (this thread) and progress (any handler thread) share the pipe
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return
            if job is None:
                return
            outcome = run_job(job, _sender(conn, send_lock))
            with send_lock:
                conn.send(outcome)
            # What the job left running dies now, while the executor records the outcome.
            sandbox.end_descendants()
    finally:
        registry.teardown()


#: The context of the job the child is running (what ``STOP_SIGNAL`` stops), or ``None`` between jobs.
_current: TaskContext | None = None


def _stop_current(signum: int, frame: Any) -> None:
    ctx = _current
    if ctx is not None and not ctx.stop.is_set():  # the executor repeats the signal until the job ends
        # Set from another thread: the handler may be inside ``ctx.stop.wait()`` holding the event's lock,
        # which this signal handler (running on that same thread) must not try to take.
        threading.Thread(target=ctx.stop.set, daemon=True).start()


@contextlib.contextmanager
def captured_output(path: str) -> Iterator[int]:
    """Point fds 1 and 2 at the log file ``path`` (``O_APPEND``) for the block; yields its fd (-1: no file)."""
    if not path:
        yield -1
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    _flush_std()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield fd
    finally:
        _flush_std()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for spare in (*saved, fd):
            os.close(spare)


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _sender(conn: Connection, lock: threading.Lock) -> Callable[[Progress], None]:
    def send(report: Progress) -> None:
        with lock, contextlib.suppress(OSError, ValueError):  # a pipe the executor closed: it stops us anyway
            conn.send(report)

    return send


def _drop(_: Any) -> None:
    """The sinks of a context whose job ended: a handler's lingering thread writes nowhere."""


def run_job(job: Job, send_progress: Callable[[Progress], None] = _drop) -> Outcome:
    """Run one job with its ``tq`` handler (in the child), its output captured in ``job.log_path`` and its
    progress reports passed to ``send_progress``."""
    global _current
    with captured_output(job.log_path) as log_fd:
        ctx = job.context()
        ctx.log_sink = functools.partial(_write_all, log_fd) if log_fd >= 0 else None
        ctx.progress_sink = send_progress
        _current = ctx
        try:
            return _call(ctx)
        finally:
            _current = None
            # The fd is closed next and its number reused, and the pipe carries the next job's messages: a
            # lingering thread of the handler must write to neither.
            ctx.log_sink = ctx.progress_sink = _drop


def _write_all(fd: int, data: bytes) -> None:
    """Append ``data`` to the run log (one ``O_APPEND`` write: lines from several threads never mix)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _call(ctx: TaskContext) -> Outcome:
    try:
        if registry.get(ctx.type) is None:
            raise LookupError(f"this executor has no handler for type {ctx.type!r}")
        result = registry.call(ctx.type, ctx)
    except TimeoutError as error:
        return Outcome(error_type="TimeoutError", error_message=str(error), timed_out=True)
    except Permanent as error:
        return Outcome(error_type=type(error).__name__, error_message=_cut(error), permanent=True)
    except Exception as error:  # noqa: BLE001 - any handler failure is an attempt failure
        return Outcome(error_type=type(error).__name__, error_message=_cut(error))
    try:
        return Outcome(result_json=result_json(result))  # the task's ``result``: strict JSON, or the attempt fails
    except (TypeError, ValueError) as error:
        return Outcome(error_type=type(error).__name__, error_message=_cut(error))


def _cut(error: BaseException) -> str:
    return str(error)[:MAX_ERROR_CHARS]
