"""Handlers by task type: plain functions, or classes whose ``setup()``/``teardown()`` keep state across tasks."""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Job:
    """One attempt to run: what the executor sends its handler process."""

    task_id: str
    type: str
    group: str
    attempt: int
    payload: Any
    timeout_s: int
    worker: str
    #: ``<run>.<attempt>``: which run of a repeating task this attempt belongs to (as ``/runs`` lists it).
    run_id: str = ""
    #: The file the attempt's output goes to (its fds 1 and 2 and ``ctx.log``); empty: not captured.
    log_path: str = ""
    #: The bound of the stored log; the executor also keeps the file near it while the attempt runs.
    log_max_bytes: int = 0


@dataclass
class TaskContext(Job):
    """What a handler sees of the attempt it runs: the job, a stop flag, and its run log."""

    #: For handlers that wait (``sleep``): set when the attempt's task is cancelled, a short grace before the
    #: executor kills the handler process. A timeout, a lost lease or a shutdown kill it without warning.
    stop: threading.Event = field(default_factory=threading.Event)
    #: Lines logged while no log file is open (a handler called outside an executor, e.g. in a test).
    output: list[str] = field(default_factory=list)
    #: The run log's file descriptor (opened ``O_APPEND`` by the handler process), or -1.
    log_fd: int = field(default=-1, repr=False)

    def log(self, line: str) -> None:
        """Add a line to this attempt's run log."""
        if self.log_fd < 0:
            self.output.append(line)
            return
        self.write_log(line.encode("utf-8", "replace") + (b"" if line.endswith("\n") else b"\n"))

    def write_log(self, data: bytes) -> None:
        """Append raw bytes to the run log (one ``O_APPEND`` write: lines from several threads never mix)."""
        if self.log_fd < 0:
            self.output.append(data.decode("utf-8", "replace").rstrip("\n"))
            return
        view = memoryview(data)
        while view:
            view = view[os.write(self.log_fd, view) :]

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False if the attempt was told to stop first."""
        return not self.stop.wait(seconds)


Handler = Callable[[TaskContext], Any]


class StatefulHandler(Protocol):
    """A handler class: one instance per executor process, set up once, called per task."""

    def setup(self) -> None:
        """Acquire what the handler keeps across tasks (connections, models)."""

    def teardown(self) -> None:
        """Release it at shutdown."""

    def __call__(self, ctx: TaskContext) -> Any:
        """Run one attempt."""


class HandlerRegistry:
    """Handlers by task type name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._stateful: list[StatefulHandler] = []

    def register(self, type_name: str, target: Handler | type) -> None:
        """Register a function, or a class to instantiate once (actor style)."""
        if type_name in self._handlers:
            raise ValueError(f"task type {type_name!r} is registered twice")
        if isinstance(target, type):
            instance = target()
            self._stateful.append(instance)
            self._handlers[type_name] = instance
        else:
            self._handlers[type_name] = target

    def handler(self, type_name: str) -> Callable[[Any], Any]:
        """Decorator form of :meth:`register`."""

        def decorate(target: Any) -> Any:
            self.register(type_name, target)
            return target

        return decorate

    def get(self, type_name: str) -> Handler | None:
        """The handler for a type, if any."""
        return self._handlers.get(type_name)

    @property
    def types(self) -> list[str]:
        """Registered type names."""
        return sorted(self._handlers)

    def setup(self) -> None:
        """Call ``setup()`` on every class handler."""
        for handler in self._stateful:
            handler.setup()

    def teardown(self) -> None:
        """Call ``teardown()`` on every class handler."""
        for handler in self._stateful:
            handler.teardown()


#: The registry that handler modules register into with ``@handler("type")``.
registry = HandlerRegistry()
handler = registry.handler


def load_modules(names: Iterable[str]) -> None:
    """Import handler modules so their decorators register."""
    for name in names:
        importlib.import_module(name)
