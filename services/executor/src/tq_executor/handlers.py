"""Handlers by task type: plain functions, or classes whose ``setup()``/``teardown()`` keep state across tasks."""

from __future__ import annotations

import importlib
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


@dataclass
class TaskContext(Job):
    """What a handler sees of the attempt it runs: the job, a stop flag, and its captured output."""

    #: For handlers that wait (``sleep``). An attempt that must stop (timeout, lost lease, shutdown) is
    #: stopped by killing its handler process, so inside a handler this flag is never set today.
    stop: threading.Event = field(default_factory=threading.Event)
    #: Captured output lines for the run log.
    output: list[str] = field(default_factory=list)

    def log(self, line: str) -> None:
        """Add a line to this attempt's run log."""
        self.output.append(line)

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
