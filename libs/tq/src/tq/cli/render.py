"""Output: one JSON document for ``--json``, rich tables for people.

Everything is rendered from the JSON the API sent (``doc()`` of a client model), so ``--json`` prints exactly
what the HTTP API answers and the tables cannot show a field the API does not have."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from tq.models import ENDED, Resource

#: Ended statuses that make an awaiting command exit 1.
NOT_SUCCEEDED = ENDED - {"succeeded"}

TASK_COLUMNS = ("id", "type", "group", "status", "attempts", "priority", "created_at")


def doc(value: Any) -> Any:
    """The API's JSON of a client model (or of a list of them), exactly as the server sent it; plain JSON as it
    is."""
    if isinstance(value, Resource):
        return value.as_json()
    if isinstance(value, list | tuple):
        return [doc(item) for item in value]
    return value


#: C0 and C1 control characters but newline and tab, and DEL: what could drive a terminal (ESC [, OSC 52).
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with its control characters (but newline and tab) shown as ``\\xNN``: for strings a group's tasks
    can fill (run logs, progress messages, error messages), so printing them cannot move the cursor, clear the
    screen, retitle the terminal or write the clipboard."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def console() -> Console:
    """A console on stdout; off a terminal it does not wrap, colour or truncate (pipes get whole lines)."""
    out = Console(highlight=False, soft_wrap=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=100_000, no_color=True)
    return out


def print_json(document: Any) -> None:
    """One JSON document on stdout."""
    click.echo(json.dumps(doc(document), indent=2, ensure_ascii=False))


def print_outcome(outcome: Any, as_json: bool, *, done: str, would: str) -> None:
    """What an action on many tasks did (``done``) or, on a dry run, ``would`` do: the JSON answer, or a count
    and the ids one a line."""
    document = doc(outcome)
    if as_json:
        print_json(document)
        return
    count = document["count"]
    verb = would if document["dry_run"] else done
    click.echo(f"{verb} {count} task{'' if count == 1 else 's'}" + (":" if count else ""))
    for task_id in document["ids"]:
        click.echo(f"  {task_id}")


def cell(value: Any) -> Text:
    """A table cell: ``-`` for null, compact JSON for objects and lists, never rich markup nor a control
    character (:func:`visible`)."""
    if value is None:
        return Text("-", style="dim")
    if isinstance(value, dict | list):
        return Text(visible(json.dumps(value, separators=(",", ":"), ensure_ascii=False)))
    return Text(visible(str(value)), style=_STATUS_STYLE.get(str(value), ""))


_STATUS_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "cancelled": "yellow",
    "expired": "yellow",
    "running": "cyan",
    "retrying": "magenta",
}


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str], *, empty: str) -> None:
    """A table of ``columns`` of each row (headers upper case); ``empty`` on stderr when there is no row."""
    table = Table(*(name.upper() for name in columns), box=None, pad_edge=False, header_style="bold")
    count = 0
    for row in rows:
        table.add_row(*(cell(row.get(name)) for name in columns))
        count += 1
    if count == 0:
        click.echo(empty, err=True)
        return
    console().print(table)


def print_fields(document: dict[str, Any]) -> None:
    """One resource as ``name  value`` lines, in the API's field order."""
    table = Table("", "", box=None, show_header=False, pad_edge=False)
    for name, value in document.items():
        table.add_row(Text(name, style="bold"), cell(value))
    console().print(table)


def print_page(page: dict[str, Any], columns: Sequence[str], *, empty: str, as_json: bool) -> None:
    """A page ``{"items", "next_cursor"}``: as it is with ``as_json``, else as a table, then (on stderr) how to
    read the next page if there is one."""
    if as_json:
        print_json(page)
        return
    print_table(page["items"], columns, empty=empty)
    if page.get("next_cursor"):
        click.echo(f"more: the same command with --cursor {page['next_cursor']}", err=True)
