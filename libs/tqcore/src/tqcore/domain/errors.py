"""Domain errors: one root, small subclasses whose docstring is the default message (a dependency being down is
not the domain's: ``tqcore.errors``)."""

from __future__ import annotations

from typing import Any


class TqError(Exception):
    """Something went wrong in tq."""

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.message = message or (self.__doc__ or type(self).__name__).strip().splitlines()[0]
        self.context = context
        super().__init__(self.message)


class TaskNotFound(TqError):
    """Raised when no task has the given id (or the caller may not see it)."""


class IllegalTransition(TqError):
    """Raised when a change is not allowed in the task's current state."""


class StaleAttempt(IllegalTransition):
    """Raised when an attempt that no longer owns the task tries to change it."""


class LeaseHeld(IllegalTransition):
    """Raised when a lease found expired was extended by its holder before it could be reclaimed."""


class VersionConflict(TqError):
    """Raised when the task changed since it was read: another writer committed first."""

    def __init__(self, message: str | None = None, *, current: Any = None, **context: Any) -> None:
        super().__init__(message, **context)
        #: The task as it is now, when the store could tell (``None`` if it is gone or unknown).
        self.current = current


class RunNotFound(TaskNotFound):
    """Raised when the task has no run with the given id, or no log was recorded for it."""


class LogExpired(TqError):
    """Raised when a run's log is past its retention (or already deleted by the bucket's lifecycle rule)."""


class Forbidden(TqError):
    """Raised when the caller is not allowed to act on a group."""


class IdempotencyMismatch(TqError):
    """Raised when an idempotency key is reused with a different request body."""


class UnknownTaskType(TqError):
    """Raised when no executor handles the requested task type."""


class InvalidSchedule(TqError):
    """Raised when a schedule is well-formed but can never run (no slot before its end)."""


class PreconditionFailed(TqError):
    """Raised when ``If-Match`` names a version that is no longer the task's current one."""


class TaskTooLarge(TqError):
    """Raised when a task (payload and result together) would not fit in one stored item."""


class PayloadTooLarge(TaskTooLarge):
    """Raised when a payload holds more JSON nodes than the bound allows."""


class InvalidCursor(TqError):
    """Raised when a pagination cursor is malformed or belongs to another listing."""


class GroupRequired(TqError):
    """Raised when a listing needs a group and the caller named none."""


class InvalidPayload(TqError):
    """Raised when a payload is well-formed JSON that its task type refuses (e.g. a script not on the allow-list)."""

    def __init__(self, message: str | None = None, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        #: ``{loc, msg}`` per refused part, as a 422 problem lists them.
        self.errors = errors or []
