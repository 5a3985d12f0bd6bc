"""Task types as code: ``@handler("type")`` on a function, an ``async def`` or a class, and what a handler sees.

A registry maps each type name to a :class:`HandlerSpec`: the callable, the per-type defaults a submit may still
override (retries, timeout, priority) and, optionally, a pydantic model its payload must validate against (the
executor publishes the model's JSON schema, so the gateway refuses a bad payload at submit with 422).
Nothing here talks to AWS: the executor feeds a :class:`TaskContext` sinks for the run log and progress, and
``tq.testing`` feeds it lists.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

#: What a task type may be called (the gateway's rule for ``type``).
TYPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
PRIORITIES = ("high", "normal", "low")
#: A progress message is cut to this many characters.
MAX_PROGRESS_MESSAGE = 500


class Permanent(Exception):
    """Raise to fail the task at once: no retry, the task ends ``failed`` and is dead-lettered."""


@dataclass(frozen=True)
class Progress:
    """How far the running attempt is: a fraction in [0, 1] and/or a message (either may be ``None``)."""

    fraction: float | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.fraction is not None:
            if isinstance(self.fraction, bool) or not isinstance(self.fraction, int | float):
                raise TypeError("progress fraction must be a number between 0 and 1, or None")
            if not 0.0 <= float(self.fraction) <= 1.0:
                raise ValueError(f"progress fraction must be between 0 and 1, not {self.fraction}")
        if self.message is not None and not isinstance(self.message, str):
            raise TypeError("progress message must be a string, or None")

    def as_dict(self) -> dict[str, Any]:
        """``{"fraction": ..., "message": ...}``, the message cut to ``MAX_PROGRESS_MESSAGE`` characters."""
        fraction = None if self.fraction is None else float(self.fraction)
        message = None if self.message is None else self.message[:MAX_PROGRESS_MESSAGE]
        return {"fraction": fraction, "message": message}


@dataclass
class TaskContext:
    """What a handler sees of the attempt it runs.

    ``payload`` is the task's JSON payload, or an instance of the handler's declared ``payload`` model.
    """

    task_id: str
    type: str
    group: str
    attempt: int
    payload: Any
    timeout_s: int
    #: ``<run>.<attempt>``: which run of a repeating task this attempt belongs to (as ``/runs`` lists it).
    run_id: str = ""
    #: The executor running the attempt.
    worker: str = ""
    #: Set when the attempt's task is cancelled, a short grace before the executor kills the handler. A timeout,
    #: a lost lease or a shutdown kill it without warning.
    stop: threading.Event = field(default_factory=threading.Event)
    #: Lines logged while no run log is attached (a handler run by ``tq.testing``).
    output: list[str] = field(default_factory=list)
    #: Every progress report while no executor is attached, oldest first.
    progress_reports: list[Progress] = field(default_factory=list)
    #: Where the executor writes the run log and sends progress; ``None`` in tests.
    log_sink: Callable[[bytes], None] | None = field(default=None, repr=False)
    progress_sink: Callable[[Progress], None] | None = field(default=None, repr=False)

    def log(self, line: str) -> None:
        """Add a line to this attempt's run log."""
        if self.log_sink is None:
            self.output.append(line.rstrip("\n"))
            return
        self.log_sink(line.encode("utf-8", "replace") + (b"" if line.endswith("\n") else b"\n"))

    def write_log(self, data: bytes) -> None:
        """Append raw bytes to the run log."""
        if self.log_sink is None:
            self.output.extend(data.decode("utf-8", "replace").rstrip("\n").split("\n"))
            return
        self.log_sink(data)

    def progress(self, fraction: float | None = None, message: str | None = None) -> None:
        """Report how far the attempt is (shown as the task's ``progress`` while it runs; the newest wins)."""
        report = Progress(fraction, message)
        if self.progress_sink is None:
            self.progress_reports.append(report)
            return
        self.progress_sink(report)

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; False if the attempt was told to stop first."""
        return not self.stop.wait(seconds)


@dataclass(frozen=True)
class HandlerSpec:
    """One task type: its callable and the defaults it declares."""

    name: str
    target: Callable[..., Any] | type
    max_retries: int | None = None
    timeout_s: int | None = None
    priority: Literal["high", "normal", "low"] | None = None
    payload: type[BaseModel] | None = None

    def __post_init__(self) -> None:
        if not TYPE_NAME.match(self.name):
            raise ValueError(f"task type {self.name!r}: letters, digits and _.:- only, 1-128, starting alphanumeric")
        if self.max_retries is not None and not 0 <= self.max_retries <= 20:
            raise ValueError(f"task type {self.name!r}: max_retries must be 0-20")
        if self.timeout_s is not None and not 1 <= self.timeout_s <= 43200:
            raise ValueError(f"task type {self.name!r}: timeout_s must be 1-43200")
        if self.priority is not None and self.priority not in PRIORITIES:
            raise ValueError(f"task type {self.name!r}: priority must be one of {', '.join(PRIORITIES)}")
        if self.payload is not None and not (isinstance(self.payload, type) and issubclass(self.payload, BaseModel)):
            raise TypeError(f"task type {self.name!r}: payload must be a pydantic model class")
        if not callable(self.target):
            raise TypeError(f"task type {self.name!r}: a handler must be a function or a class with __call__")

    @property
    def is_class(self) -> bool:
        """A class: one instance per process, ``setup()`` before its first task, ``teardown()`` at exit."""
        return isinstance(self.target, type)

    def defaults(self) -> dict[str, Any]:
        """The declared defaults, as submit fields (``{"retry": {"max_retries": 3}, "timeout_s": 60, ...}``)."""
        out: dict[str, Any] = {}
        if self.max_retries is not None:
            out["retry"] = {"max_retries": self.max_retries}
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        if self.priority is not None:
            out["priority"] = self.priority
        return out

    def payload_schema(self) -> dict[str, Any] | None:
        """The JSON schema of the declared payload model (what the gateway validates submits with), if any."""
        return None if self.payload is None else self.payload.model_json_schema()


class HandlerRegistry:
    """Handlers by task type name; a class handler is instantiated and set up on its first task in the process."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        self._instances: dict[str, Any] = {}
        self._runner: asyncio.Runner | None = None

    def register(self, spec: HandlerSpec) -> None:
        """Add one type; a type registered twice is an error (two modules claiming one name)."""
        if spec.name in self._specs:
            raise ValueError(f"task type {spec.name!r} is registered twice")
        self._specs[spec.name] = spec

    def handler(
        self,
        type_name: str,
        *,
        max_retries: int | None = None,
        timeout_s: int | None = None,
        priority: Literal["high", "normal", "low"] | None = None,
        payload: type[BaseModel] | None = None,
    ) -> Callable[[Any], Any]:
        """Decorator: register a function, an ``async def`` or a class as the handler of ``type_name``."""

        def decorate(target: Any) -> Any:
            self.register(HandlerSpec(type_name, target, max_retries, timeout_s, priority, payload))
            return target

        return decorate

    def get(self, type_name: str) -> HandlerSpec | None:
        """The spec of a type, if registered."""
        return self._specs.get(type_name)

    @property
    def types(self) -> list[str]:
        """Registered type names, sorted."""
        return sorted(self._specs)

    def specs(self) -> list[HandlerSpec]:
        """Every registered spec, by type name."""
        return [self._specs[name] for name in self.types]

    def _instance(self, spec: HandlerSpec) -> Any:
        """The process's instance of a class handler, set up on its first task. A ``setup()`` that raises fails
        that task (a retryable ``RuntimeError`` naming the setup error) and is tried again on the next one."""
        instance = self._instances.get(spec.name)
        if instance is None:
            try:
                instance = spec.target()
                if hasattr(instance, "setup"):
                    instance.setup()
            except Exception as error:
                raise RuntimeError(f"setup of {spec.name!r} failed: {type(error).__name__}: {error}") from error
            self._instances[spec.name] = instance
        return instance

    def teardown(self) -> None:
        """Call ``teardown()`` on every class handler set up, and close the event loop of async handlers."""
        for instance in self._instances.values():
            if hasattr(instance, "teardown"):
                instance.teardown()
        self._instances.clear()
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def call(self, type_name: str, ctx: TaskContext) -> Any:
        """Run the handler of ``type_name`` on ``ctx`` and return its result.

        The payload is validated into the declared model first (a payload that does not fit raises
        :class:`Permanent`: retrying cannot fix it); an ``async`` handler runs on this registry's event loop.
        """
        spec = self._specs.get(type_name)
        if spec is None:
            raise LookupError(f"no handler for task type {type_name!r}")
        if spec.payload is not None and not isinstance(ctx.payload, spec.payload):
            try:
                ctx.payload = spec.payload.model_validate(ctx.payload)
            except ValidationError as error:
                raise Permanent(f"payload does not fit {spec.payload.__name__}: {error}") from None
        result = self._instance(spec)(ctx) if spec.is_class else spec.target(ctx)
        if inspect.isawaitable(result):
            if self._runner is None:
                # A loop of its own, never installed as the thread's current loop: closing it must not leave the
                # thread without one (``asyncio.Runner`` would ``set_event_loop(None)`` for code that runs after).
                self._runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
            result = self._runner.run(_awaited(result))
        return result


def result_json(result: Any) -> str:
    """A handler's result as the task's ``result`` stores it: strict JSON text (no ``NaN``); raises ``TypeError``
    or ``ValueError`` saying so when it is not JSON (the attempt then fails)."""
    try:
        return json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise type(error)(f"the handler's result is not JSON ({type(result).__name__}): {error}") from None


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


#: The registry that ``@tq.handler`` registers into (one per process).
registry = HandlerRegistry()
handler = registry.handler


def load_modules(names: Iterable[str]) -> None:
    """Import handler modules so their decorators register."""
    for name in names:
        importlib.import_module(name)
