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
