"""Errors of the infrastructure: a dependency throttled or unreachable, not a rule of the domain.

They share the domain's root (``TqError``: one ``except`` catches every tq error) but live outside
``tqcore.domain``, which knows nothing of stores and queues being down. The gateway maps both kinds to HTTP in one
place (``tq_gateway.errors``).
"""

from __future__ import annotations

from tqcore.domain.errors import TqError


class StoreUnavailable(TqError):
    """Raised when the task store is throttled or cannot be reached; the caller may retry later."""


class QueueUnavailable(TqError):
    """Raised when the queue cannot be reached; the task stays durable and is re-sent later."""


class TypeServedElsewhere(TqError):
    """Raised when an executor would register a task type that a live executor of another pool serves."""

    def __init__(self, type_name: str, pool: str, by: str) -> None:
        super().__init__(
            f"task type {type_name!r} is served by pool {pool!r} (executor {by} is alive): a type belongs to one pool;"
            f" to move it, stop pool {pool!r}'s executors or drop the type from their TQ_HANDLER_MODULES first",
            type=type_name,
            pool=pool,
            by=by,
        )
