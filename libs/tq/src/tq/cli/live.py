"""Showing a :class:`~tq.cli.follow.Follower`'s updates: a live panel on a terminal, plain lines otherwise.

The panel holds the task's status and attempt and a progress bar with the handler's message; each attempt's log
lines are printed above it as they arrive, their control characters shown escaped (:func:`~tq.cli.render.visible`).
Off a terminal the same updates are one line each, logs as they are, so a log file or a CI job reads them in
order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click
from rich.console import Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from tq.cli.follow import Log, Progress, Status, Update
from tq.cli.render import cell, console, visible
from tq.models import ENDED


def show(updates: Iterable[Update]) -> None:
    """Show ``updates`` live on a terminal, as plain lines otherwise."""
    out = console()
    if not out.is_terminal:
        for update in updates:
            _plain(update)
        return
    panel = _Panel()
    with Live(panel.render(), console=out, refresh_per_second=8, transient=False) as live:
        for update in updates:
            if isinstance(update, Log):
                live.console.print(Text(_log_header(update), style="dim"))
                if update.text:
                    live.console.print(Text(visible(update.text.rstrip("\n"))))
            else:
                panel.apply(update)
            live.update(panel.render())


def _plain(update: Update) -> None:
    if isinstance(update, Status):
        click.echo(_status_line(update.task))
    elif isinstance(update, Progress):
        click.echo(f"progress {_percent(update.fraction)} {update.message or ''}".rstrip())
    else:
        click.echo(_log_header(update))
        if update.text:
            click.echo(update.text.rstrip("\n"), color=True)  # as it is (click would strip ANSI sequences)


def _status_line(task: dict[str, Any]) -> str:
    line = f"{task.get('id')} {task.get('type')} {task.get('status')} (attempt {task.get('attempts')})"
    error = task.get("last_error")
    if task.get("status") in ("failed", "retrying") and isinstance(error, dict):
        line += f": {error.get('type')}: {error.get('message')}"
    return line


def _log_header(log: Log) -> str:
    run = log.run
    empty = "" if log.text else " (empty)"
    return f"--- log of run {run.get('run_id')} (attempt {run.get('attempt')}, {run.get('status')}){empty}"


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction:.0%}"


class _Panel:
    """The live part: status line, progress bar and message."""

    def __init__(self) -> None:
        self._task: dict[str, Any] = {}
        self._progress = Progress(None, None)

    def apply(self, update: Status | Progress) -> None:
        if isinstance(update, Status):
            self._task = update.task
        else:
            self._progress = update

    def render(self) -> Group:
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Text(str(self._task.get("id", "")), style="bold"),
            Text(str(self._task.get("type", ""))),
            cell(self._task.get("status")),
            Text(f"attempt {self._task.get('attempts', '-')}"),
        )
        fraction = self._progress.fraction
        if self._task.get("status") == "succeeded":  # whatever it last reported, it is done
            fraction = 1.0
        waiting = fraction is None and self._task.get("status") not in ENDED
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=1.0, completed=fraction or 0.0, width=30, pulse=waiting),
            Text(_percent(fraction)),
            Text(visible(self._progress.message or ""), style="italic"),
        )
        return Group(head, bar)
