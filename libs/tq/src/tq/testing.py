"""Run a handler in-process, in milliseconds, with a context you build: no emulator, no executor.

```python
from tq.testing import run

def test_resize():
    outcome = run("resize", {"url": "s3://..."})
    assert outcome.result == {"ok": True}
    assert outcome.progress[-1].fraction == 1.0
```
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from tq.handlers import HandlerRegistry, Permanent, Progress, TaskContext, registry, result_json


@dataclass
class Outcome:
    """What one in-process run produced."""

    #: The handler's return value (JSON-compatible), or ``None`` when it raised.
    result: Any
    #: The exception the handler raised, if any (``Permanent`` or anything else).
    error: BaseException | None
    #: The run log's lines, and every progress report, oldest first.
    log: list[str] = field(default_factory=list)
    progress: list[Progress] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the handler returned (the executor would record ``succeeded``)."""
        return self.error is None

    @property
    def permanent(self) -> bool:
        """True when it raised ``Permanent`` (no retry: the task would fail at once)."""
        return isinstance(self.error, Permanent)


def context(
    type_name: str,
    payload: Any = None,
    *,
    attempt: int = 1,
    group: str = "test",
    task_id: str = "test-task",
    timeout_s: int = 300,
    stop: threading.Event | None = None,
) -> TaskContext:
    """A context as the executor would build it for one attempt (its run log and progress collected in lists)."""
    return TaskContext(
        task_id=task_id,
        type=type_name,
        group=group,
        attempt=attempt,
        payload=payload,
        timeout_s=timeout_s,
        run_id=f"1.{attempt}",
        worker="tq.testing",
        stop=stop or threading.Event(),
    )


def run(
    type_name: str,
    payload: Any = None,
    *,
    ctx: TaskContext | None = None,
    handlers: HandlerRegistry = registry,
    raises: bool = False,
    **context_fields: Any,
) -> Outcome:
    """Run the handler registered for ``type_name`` once, as an executor would, and collect what it did.

    The result must be JSON (as it must be to become the task's ``result``); ``raises=True`` re-raises the
    handler's exception instead of returning it in the outcome. ``context_fields`` go to :func:`context`.
    """
    ctx = ctx or context(type_name, payload, **context_fields)
    try:
        result = handlers.call(type_name, ctx)
        result_json(result)
    except Exception as error:
        if raises:
            raise
        return Outcome(None, error, ctx.output, ctx.progress_reports)
    return Outcome(result, None, ctx.output, ctx.progress_reports)
