"""``--payload JSON | @FILE | @-`` and the schedule flags, parsed into the submit body (bad input: exit 2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def parse_payload(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    """The payload a ``--payload`` value gives: JSON text, ``@FILE`` (a JSON file) or ``@-`` (JSON on stdin)."""
    if value is None:
        return None
    if value.startswith("@"):
        source = value[1:]
        text = _read(source)
        where = "stdin" if source == "-" else source
    else:
        text, where = value, "the value"
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"{where} is not JSON: {error}") from None


def _read(source: str) -> str:
    try:
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise click.BadParameter(f"cannot read {source}: {reason}") from None


def schedule(at: str | None, every_s: float | None, cron: str | None, tz: str | None) -> dict[str, Any] | None:
    """The ``schedule`` object of ``--at``, ``--every`` or ``--cron [--tz]`` (at most one of them)."""
    given = [flag for flag, value in (("--at", at), ("--every", every_s), ("--cron", cron)) if value is not None]
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} cannot be combined: give one schedule")
    if tz is not None and cron is None:
        raise click.UsageError("--tz applies to --cron only")
    if at is not None:
        return {"at": at}
    if every_s is not None:
        return {"every_s": every_s}
    if cron is not None:
        return {"cron": cron, **({"timezone": tz} if tz else {})}
    return None
