"""Validated inputs of the read-side and dead-letter endpoints (pydantic models, no I/O)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tqcore.domain.commands import Name
from tqcore.domain.model import Status

#: Validation errors of these models are about the query string (the gateway says so in its 422).
QUERY_STRING = "query string"

#: A cursor as handed out (opaque); anything longer was not one of ours.
Cursor = Annotated[str, Field(min_length=1, max_length=1024)]


class PageQuery(BaseModel):
    """``limit`` and ``cursor`` of a paged listing."""

    model_config = ConfigDict(frozen=True, title=QUERY_STRING)

    limit: int = Field(default=50, ge=1, le=200)
    cursor: Cursor | None = None


#: Events ``GET /v1/tasks/{id}/events`` returns per page, by default and at most.
EVENT_PAGE_LIMIT = 1000


class EventPageQuery(BaseModel):
    """``GET /v1/tasks/{id}/events``: a page of a task's events, oldest first."""

    model_config = ConfigDict(frozen=True, title=QUERY_STRING)

    limit: int = Field(default=EVENT_PAGE_LIMIT, ge=1, le=EVENT_PAGE_LIMIT)
    cursor: Cursor | None = None


#: The longest ``GET /v1/tasks/{id}?wait_s=`` waits for a task to end (contract section 7).
MAX_WAIT_S = 30


class TaskReadQuery(BaseModel):
    """``GET /v1/tasks/{id}``: ``wait_s`` seconds at most to wait for the task to end (0: answer at once)."""

    model_config = ConfigDict(frozen=True, title=QUERY_STRING)

    wait_s: float = Field(default=0, ge=0, le=MAX_WAIT_S, allow_inf_nan=False)


class DeadLetterQuery(PageQuery):
    """``GET /v1/dlq``: a page of one group's dead letters (all the caller's groups if none is named)."""

    group: Name | None = None


#: The longest ``name`` filter: a task's name is at most 200 characters.
NAME_FILTER_MAX = 200


class TaskListQuery(PageQuery):
    """``GET /v1/tasks``: a page of one group's tasks (all the caller's groups if none is named), filtered; ``name``
    keeps the tasks whose name contains it, ignoring case."""

    group: Name | None = None
    status: Status | None = None
    type: Name | None = None
    name: Annotated[str, Field(min_length=1, max_length=NAME_FILTER_MAX)] | None = None

    def matches_name(self, name: str | None) -> bool:
        """Whether a task named ``name`` passes the ``name`` filter."""
        return self.name is None or (name is not None and self.name.casefold() in name.casefold())


class GroupAction(BaseModel):
    """An action on many tasks of one group: the given ``ids`` (``limit`` then does not apply), or else the newest
    ``limit`` that qualify; a ``dry_run`` only says which."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    group: Name
    ids: list[Annotated[str, Field(max_length=256)]] | None = Field(default=None, max_length=1000)
    limit: int = Field(default=100, ge=1, le=1000)
    dry_run: bool = False


class RedriveDeadLetters(GroupAction):
    """The body of ``POST /v1/dlq/redrive``: the given ``ids``, or else the newest ``limit`` dead letters."""


class CancelTasks(GroupAction):
    """The body of ``POST /v1/tasks:cancel``: the group's tasks not yet ended, the given ``ids`` or else the
    newest ``limit``, of this ``status`` and ``type`` if named."""

    status: Status | None = None
    type: Name | None = None
