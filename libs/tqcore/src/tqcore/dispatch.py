"""The message that hands one attempt of a task to an executor, in Dramatiq's wire format.

Producers (gateway, scheduler, reaper) build it without importing Dramatiq; the executor's broker decodes
it as a ``dramatiq.Message`` whose only argument is :meth:`Dispatch.to_dict`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from tqcore.domain import attempts
from tqcore.domain.codec import task_from_dict, task_to_dict
from tqcore.domain.model import Priority
from tqcore.domain.task import Task

#: Messages larger than this leave the task snapshot out; the executor then reads it from the store.
MAX_INLINE_BYTES = 200 * 1024


def actor_name(priority: Priority) -> str:
    """The Dramatiq actor that runs tasks of one priority."""
    return f"run_{priority.value}"


def enqueue_of(task: Task) -> str | None:
    """A queued task's enqueue: the time it was queued (ms) and its poison strikes. A re-send leaves both
    alone; every new enqueue (submit, promotion, retry, redrive, a run's next attempt) sets ``queued_at``, and
    the re-send after SQS dead-lettered the message counts a strike. The claim refuses a message whose enqueue
    is no longer the task's (``attempts.check_next``)."""
    return attempts.enqueue_token(task.queued_at, task.poison_strikes)


@dataclass(frozen=True)
class Dispatch:
    """Run attempt ``attempt`` of ``task_id``, which was ``version`` when it was sent.

    ``task`` is the snapshot at that version when it fits in a message: if the claim's version condition
    holds, the snapshot is exactly what is stored, so the executor needs no read before running.
    """

    task_id: str
    attempt: int
    version: int
    priority: Priority
    task: Task | None = None
    #: The run the attempt belongs to (attempt numbers restart with each run; ``None`` in older messages).
    run: int | None = None
    #: Which enqueue this is (see :meth:`enqueue_of`); ``None`` in older messages.
    enqueue: str | None = None

    @classmethod
    def of(cls, task: Task) -> Dispatch:
        """The dispatch for a ``queued`` task's next attempt."""
        return cls(task.id, task.attempts + 1, task.version, task.priority, task, task.run_no, enqueue_of(task))

    @property
    def deduplication_id(self) -> str:
        """SQS FIFO dedup id: task id + attempt + which enqueue of it this is.

        Attempt numbers restart for a redrive or a repeating task's next run, so the attempt alone would
        swallow those; the enqueue (when the task was queued, and how often SQS dead-lettered its message
        since) does not repeat. The reaper's re-sends of a task still ``queued`` keep it on purpose: when the
        first message did reach SQS and only waits in a backlog, SQS drops the copies (for its five-minute
        window), so a backlog is not multiplied by re-sends; when the send was lost, the re-send is the message.
        """
        return f"{self.task_id}.{self.attempt}.{self.enqueue or f'v{self.version}'}"

    def to_dict(self) -> dict[str, Any]:
        """The actor argument."""
        return {
            "task_id": self.task_id,
            "attempt": self.attempt,
            "version": self.version,
            "priority": self.priority.value,
            "run": self.run,
            "enqueue": self.enqueue,
            "task": None if self.task is None else task_to_dict(self.task),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Dispatch:
        """The inverse of :meth:`to_dict`."""
        return cls(
            task_id=raw["task_id"],
            attempt=int(raw["attempt"]),
            version=int(raw["version"]),
            priority=Priority(raw["priority"]),
            task=None if raw.get("task") is None else task_from_dict(raw["task"]),
            run=None if raw.get("run") is None else int(raw["run"]),
            enqueue=raw.get("enqueue"),
        )

    def encode(self) -> str:
        """The SQS message body: a Dramatiq message (JSON) for the priority's actor."""
        body = self._body(self.to_dict())
        if len(body.encode()) > MAX_INLINE_BYTES:
            body = self._body({**self.to_dict(), "task": None})
        return body

    def _body(self, arg: dict[str, Any]) -> str:
        return json.dumps(
            {
                "queue_name": self.priority.value,
                "actor_name": actor_name(self.priority),
                "args": [arg],
                "kwargs": {},
                "options": {},
                "message_id": str(uuid.uuid4()),
                "message_timestamp": int(time.time() * 1000),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )
