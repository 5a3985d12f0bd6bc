"""The read side's port: listings served from indexes, with opaque pagination cursors shared by every adapter."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from tqcore.documents import ListedTask
from tqcore.domain.errors import InvalidCursor
from tqcore.domain.model import Priority, Progress, Status
from tqcore.domain.task import Task

#: A dead letter's place in the newest-first order: ``<finished_at>#<id>`` (the ``dlq`` index's sort key).
_DLQ_POSITION = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z#[A-Za-z0-9_-]{1,64}")
_TASK_POSITION = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,1024}")


@dataclass(frozen=True)
class TaskStamp:
    """What a watcher of a task compares between two looks: any change of the task moves ``version``; progress
    reports move ``progress`` only."""

    version: int
    status: Status
    progress: Progress | None


class TaskQueries(Protocol):
    """Listings of tasks that no single task's partition can answer."""

    def dead_letter_positions(self, group: str, before: str | None = None) -> Iterator[tuple[str, str]]:
        """``(position, task id)`` of ``group``'s ``failed`` tasks, newest first (position: ``<finished_at>#<id>``),
        those before ``before`` only; fetched lazily, page by page, as the caller consumes them."""
        ...

    def newest_ids(self, group: str, before: str | None = None) -> Iterator[str]:
        """Ids of ``group``'s tasks, newest first (ids sort by creation time), those sorting before ``before``
        only; fetched lazily, page by page, as the caller consumes them."""
        ...

    def scheduled_ids(self, group: str, before: str | None = None) -> Iterator[str]:
        """Ids of ``group``'s schedules (repeating tasks until they end, ``at`` tasks until their time), newest
        first, those sorting before ``before`` only; fetched lazily, page by page, as the caller consumes them."""
        ...

    def tasks(self, ids: Sequence[str]) -> list[Task]:
        """The current snapshots of the tasks with these ids, in the order given; ids of tasks that no longer
        exist (their history expired) are left out."""
        ...

    def listed(self, ids: Sequence[str]) -> list[ListedTask]:
        """:meth:`tasks` as stored documents, payloads unparsed (what a listing serves)."""
        ...

    def stamps(self, ids: Sequence[str]) -> dict[str, TaskStamp]:
        """The stamp of each task of ``ids`` that exists, read in bulk (many tasks a call) and cheaply: what the
        gateway's watch polls. May lag the task by a moment (an eventually consistent read)."""
        ...

    def dead_letter_count(self, group: str, cap: int = ...) -> int:
        """How many ``failed`` tasks ``group`` has, counting up to ``cap``."""
        ...

    def oldest_queued(self, sample: int = ...) -> dict[tuple[str, Priority], datetime]:
        """When the longest-waiting ``queued`` task of each pool's queue of a priority was queued, by ``(pool,
        priority)`` (queues with none left out; an adapter may look at a sample of the queued tasks only)."""
        ...


def encode_cursor(kind: str, position: str) -> str:
    """An opaque cursor for a position in one kind of listing (URL-safe base64, no padding)."""
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode().rstrip("=")


def decode_cursor(kind: str, cursor: str) -> str:
    """The position an :func:`encode_cursor` cursor of ``kind`` holds; ``InvalidCursor`` for anything else."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidCursor()
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor() from None
    found, sep, position = text.partition(":")
    if found != kind or not sep:
        raise InvalidCursor()
    return position


def dlq_after(cursor: str) -> str:
    """The position a dead-letter cursor holds (list what sorts before it); ``InvalidCursor`` if malformed."""
    position = decode_cursor("dlq", cursor)
    if not _DLQ_POSITION.fullmatch(position):
        raise InvalidCursor()
    return position


def task_after(cursor: str, kind: str = "tasks") -> str:
    """The task id a task-listing cursor (of ``kind``) holds (list what sorts before it); ``InvalidCursor`` if
    malformed."""
    position = decode_cursor(kind, cursor)
    if not _TASK_POSITION.fullmatch(position):
        raise InvalidCursor()
    return position
