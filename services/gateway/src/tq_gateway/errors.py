"""The one place errors become HTTP: RFC 9457 problem+json, never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

import falcon
from pydantic import ValidationError

from tq_gateway import problems
from tq_gateway.auth_failures import TooManyFailures
from tq_gateway.problems import PROBLEM_JSON
from tq_gateway.ratelimit import RateLimited
from tq_gateway.waiting import NoSlot
from tqcore.domain.errors import (
    Forbidden,
    GroupRequired,
    IdempotencyMismatch,
    IllegalTransition,
    InvalidCursor,
    InvalidPayload,
    InvalidSchedule,
    LogExpired,
    PreconditionFailed,
    TaskNotFound,
    TaskTooLarge,
    TqError,
    UnknownTaskType,
    VersionConflict,
)
from tqcore.domain.requests import QUERY_STRING
from tqcore.errors import QueueUnavailable, StoreUnavailable

log = logging.getLogger(__name__)

#: tq error (a domain rule, or a dependency down: ``tqcore.errors``) -> (HTTP status, problem slug). The first
#: matching class (in order) wins.
TQ_ERRORS: list[tuple[type[TqError], int, str]] = [
    (TaskNotFound, 404, "not-found"),
    (LogExpired, 410, "gone"),
    (Forbidden, 403, "forbidden"),
    (IdempotencyMismatch, 409, "idempotency-key-reused"),
    (UnknownTaskType, 422, "unknown-task-type"),
    (InvalidPayload, 422, "validation"),
    (InvalidSchedule, 422, "invalid-schedule"),
    (PreconditionFailed, 412, "precondition-failed"),
    (TaskTooLarge, 413, "too-large"),
    (GroupRequired, 422, "group-required"),
    (InvalidCursor, 400, "invalid-cursor"),
    (VersionConflict, 409, "conflict"),
    (IllegalTransition, 409, "illegal-transition"),
    (StoreUnavailable, 503, "unavailable"),
    (QueueUnavailable, 503, "unavailable"),
]

#: Seconds a client should wait before retrying a 503.
RETRY_AFTER_S = 1


def problem(
    resp: falcon.Response, status: int, slug: str, detail: str, *, title: str | None = None, **extra: Any
) -> None:
    """Write a problem+json response."""
    resp.status = status
    resp.content_type = PROBLEM_JSON
    # Serialised here: Falcon's media handlers know application/json, not application/problem+json.
    resp.text = problems.document(status, slug, detail, title_=title, **extra)
    if status == 503:
        resp.set_header("Retry-After", str(RETRY_AFTER_S))


def _tq_error(req: falcon.Request, resp: falcon.Response, error: TqError, params: Any) -> None:
    found = _tq_status(error)
    if found is None:
        _unexpected(req, resp, error, params)
        return
    status, slug = found
    if status >= 500:
        log.warning("dependency unavailable: %s", error)
    problem(resp, status, slug, error.message, **_tq_extra(error))


def _tq_status(error: TqError) -> tuple[int, str] | None:
    """The HTTP status and problem slug of a tq error (``None``: none is mapped, a bug)."""
    return next(((status, slug) for kind, status, slug in TQ_ERRORS if isinstance(error, kind)), None)


def _tq_extra(error: TqError) -> dict[str, Any]:
    # A refused payload lists its parts as body validation does (``errors: [{loc, msg}]``).
    return {"errors": error.errors} if isinstance(error, InvalidPayload) else {}


def _validation_error(req: falcon.Request, resp: falcon.Response, error: ValidationError, params: Any) -> None:
    part = QUERY_STRING if error.title == QUERY_STRING else "request body"
    problem(resp, 422, "validation", f"the {part} is not valid", errors=_errors(error), title="Unprocessable Content")


def _errors(error: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"]} for e in error.errors(include_url=False)]


def item_problem(error: TqError | ValidationError) -> dict[str, Any]:
    """The problem document a submit refused with ``error`` is answered with: a batch item's ``error``."""
    if isinstance(error, ValidationError):
        return problems.body(
            422, "validation", "the request body is not valid", title_="Unprocessable Content", errors=_errors(error)
        )
    found = _tq_status(error)
    if found is None:
        log.error("a batch item failed with an unmapped error: %r", error)
        return problems.body(500, "internal", "an internal error occurred; it has been logged")
    status, slug = found
    if status >= 500:
        log.warning("dependency unavailable: %s", error)
    return problems.body(status, slug, error.message, **_tq_extra(error))


def _http_error(req: falcon.Request, resp: falcon.Response, error: falcon.HTTPError, params: Any) -> None:
    status = error.status_code
    problem(resp, status, problems.slug(status), error.description or error.title or problems.title(status))
    if error.headers:
        resp.set_headers(error.headers)


def _rate_limited(
    req: falcon.Request, resp: falcon.Response, error: RateLimited | TooManyFailures, params: Any
) -> None:
    problem(resp, 429, "rate-limited", str(error), retry_after_s=error.retry_after_s)
    resp.set_header("Retry-After", str(error.retry_after_s))


def _no_slot(req: falcon.Request, resp: falcon.Response, error: NoSlot, params: Any) -> None:
    problem(resp, 503, "unavailable", str(error), title="Service Unavailable")
    resp.set_header("Retry-After", str(error.retry_after_s))


def _unexpected(req: falcon.Request, resp: falcon.Response, error: Exception, params: Any) -> None:
    log.exception("unhandled error on %s %s", req.method, req.path)
    problem(resp, 500, "internal", "an internal error occurred; it has been logged")


def register(app: falcon.App[Any, Any]) -> None:
    """Install every error handler on the app (later registrations take precedence in Falcon)."""
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(falcon.HTTPError, _http_error)
    app.add_error_handler(ValidationError, _validation_error)
    app.add_error_handler(TqError, _tq_error)
    app.add_error_handler(RateLimited, _rate_limited)
    app.add_error_handler(TooManyFailures, _rate_limited)
    app.add_error_handler(NoSlot, _no_slot)
