"""Logging: one JSON object per line (time, level, service, message, trace and task fields), ready for Loki."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from opentelemetry import trace

#: Fields bound to the current context (an attempt's task id and number), added to every line logged in it.
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("tq_log_context", default={})  # noqa: B039
#: What every ``LogRecord`` has; any other attribute came from ``extra=`` and goes into the line.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every line logged by this thread (or task) until the block ends."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats a record as a single JSON line."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            line["trace_id"] = format(span.trace_id, "032x")
            line["span_id"] = format(span.span_id, "016x")
        line.update(_CONTEXT.get())
        line.update((k, v) for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_"))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def configure_logging(service: str) -> None:
    """Send JSON lines to stderr at ``TQ_LOG_LEVEL`` (default INFO), uncaught exceptions and warnings included."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("TQ_LOG_LEVEL", "INFO").upper())
    for noisy in ("botocore", "urllib3", "dramatiq"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Libraries that configure their own handlers (gunicorn's, dramatiq's) log through the root's instead.
    for name in ("gunicorn", "gunicorn.error", "gunicorn.access", "dramatiq"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("uncaught").critical("uncaught %s: %s", kind.__name__, error, exc_info=(kind, error, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("uncaught").critical(
        "uncaught %s in thread %s: %s",
        args.exc_type.__name__,
        name,
        args.exc_value,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
