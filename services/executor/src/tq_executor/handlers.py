"""What the executor sends its handler processes (``Job``); the handlers themselves are ``tq``'s.

Handler modules register with ``from tq import handler`` into ``tq.registry`` (see ``docs/HANDLERS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tq import TaskContext


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

    def context(self) -> TaskContext:
        """The context its handler sees (the handler process plugs in the run log and progress sinks)."""
        return TaskContext(
            task_id=self.task_id,
            type=self.type,
            group=self.group,
            attempt=self.attempt,
            payload=self.payload,
            timeout_s=self.timeout_s,
            run_id=self.run_id,
            worker=self.worker,
        )
