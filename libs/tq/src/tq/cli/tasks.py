"""The task commands: submit, get, ls, watch, logs, runs, events, cancel, redrive."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import click

from tq.cli import live
from tq.cli.app import OK, TASK_NOT_SUCCEEDED, Failure, json_option, state
from tq.cli.follow import Follower, Log
from tq.cli.payload import parse_payload, schedule
from tq.cli.render import (
    NOT_SUCCEEDED,
    TASK_COLUMNS,
    console,
    doc,
    print_fields,
    print_json,
    print_outcome,
    print_page,
    visible,
)

PRIORITIES = ("high", "normal", "low")
RUN_COLUMNS = ("run_id", "attempt", "status", "started_at", "duration_ms", "worker", "error", "log_size")
EVENT_COLUMNS = ("seq", "type", "at", "actor", "data")
STATUSES = ("scheduled", "queued", "running", "retrying", "succeeded", "failed", "cancelled", "expired", "paused")


def _complete_status(_ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    return [status for status in STATUSES if status.startswith(incomplete)]


@click.command()
@click.argument("type_", metavar="TYPE")
@click.option("--group", "-g", required=True, help="The group the task belongs to.")
@click.option("--payload", callback=parse_payload, metavar="JSON|@FILE|@-", help="The payload: JSON, a file, or stdin.")
@click.option("--priority", type=click.Choice(PRIORITIES), help="Queue priority (default: the type's, else normal).")
@click.option("--at", metavar="TS", help="Run once at this RFC 3339 time.")
@click.option("--every", "every_s", type=float, metavar="SECONDS", help="Run every SECONDS.")
@click.option("--cron", metavar="EXPR", help="Run on a five-field cron expression.")
@click.option("--tz", metavar="ZONE", help="The IANA time zone of --cron (default UTC).")
@click.option("--max-retries", type=int, help="Retries after a failed attempt (0-20).")
@click.option("--timeout-s", type=int, help="Seconds an attempt may run (1-43200).")
@click.option("--idempotency-key", metavar="KEY", help="Submit at most once per KEY (default: a fresh key).")
@click.option("--wait", is_flag=True, help="Follow the task until it ends; exit 1 unless it succeeded.")
@json_option
def submit(
    type_: str,
    group: str,
    payload: Any,
    priority: str | None,
    at: str | None,
    every_s: float | None,
    cron: str | None,
    tz: str | None,
    max_retries: int | None,
    timeout_s: int | None,
    idempotency_key: str | None,
    wait: bool,
) -> int:
    """Submit a task of TYPE; print its id (the task with --json)."""
    fields: dict[str, Any] = {
        "priority": priority,
        "schedule": schedule(at, every_s, cron, tz),
        "retry": None if max_retries is None else {"max_retries": max_retries},
        "timeout_s": timeout_s,
        "idempotency_key": idempotency_key,
    }
    task = doc(state().client().submit(type_, group, payload, **{k: v for k, v in fields.items() if v is not None}))
    if wait:
        return _follow(task["id"])
    if state().json:
        print_json(task)
    else:
        click.echo(task["id"])
    return OK


@click.command()
@click.argument("task_id")
@json_option
def get(task_id: str) -> int:
    """Show a task."""
    _show_task(state().client().get(task_id))
    return OK


@click.command()
@click.argument("task_id")
@json_option
def watch(task_id: str) -> int:
    """Follow a task until it ends: status, attempt, progress and each attempt's log.

    Exit 1 if it ends failed, cancelled or expired."""
    return _follow(task_id)


def _follow(task_id: str) -> int:
    follower = Follower(state().client(), task_id, logs=not state().json, sleep=state().sleep)
    if state().json:
        for _ in follower.updates():
            pass
        print_json(follower.task)
    else:
        live.show(follower.updates())
    return TASK_NOT_SUCCEEDED if follower.task["status"] in NOT_SUCCEEDED else OK


@click.command(name="ls")
@click.option("--group", "-g", help="Only this group's tasks.")
@click.option("--status", shell_complete=_complete_status, help="Only tasks in this status.")
@click.option("--type", "type_", help="Only tasks of this type.")
@click.option("--name", help="Only tasks whose name contains this text (ignoring case).")
@click.option("--limit", type=click.IntRange(1, 200), help="Tasks on the page (1-200, default 50).")
@click.option("--cursor", help="The page after the one that gave this next_cursor.")
@json_option
def ls(
    group: str | None, status: str | None, type_: str | None, name: str | None, limit: int | None, cursor: str | None
) -> int:
    """List tasks, newest first: one page (--cursor reads the next)."""
    client = state().client()
    page = doc(client.list_page(group=group, status=status, type=type_, limit=limit, cursor=cursor, name=name))
    print_page(page, TASK_COLUMNS, empty="no tasks", as_json=state().json)
    return OK


@click.command()
@click.argument("task_id")
@click.option("--run", "run_id", metavar="RUN", help="This run's log (default: the latest run's).")
@click.option("--follow", "-f", is_flag=True, help="Print each attempt's log as it ends, until the task ends.")
@json_option
def logs(task_id: str, run_id: str | None, follow: bool) -> int:
    """Print a run's log (the latest run unless --run names one); --json: {"task_id", "run_id", "log"}.

    A run's log is stored when its attempt ends; --follow prints each attempt's log then (with --json, one
    document per line per run: JSON Lines)."""
    client = state().client()
    if follow:
        for update in Follower(client, task_id, sleep=state().sleep).updates():
            if isinstance(update, Log):
                _print_log(task_id, update.run["run_id"], update.text, lines=True)
        return OK
    if run_id is None:
        latest = next(iter(client.runs(task_id)), None)
        if latest is None:
            raise Failure(f"task {task_id} has no runs yet")
        run_id = doc(latest)["run_id"]
    _print_log(task_id, run_id, client.log(task_id, run_id), lines=False)
    return OK


def _print_log(task_id: str, run_id: str, text: str, *, lines: bool) -> None:
    """A run's log as it is (its control characters escaped on a terminal), or with ``--json`` as ``{"task_id",
    "run_id", "log"}`` (one line each if ``lines``)."""
    if state().json:
        document = {"task_id": task_id, "run_id": run_id, "log": text}
        if lines:
            click.echo(json.dumps(document, ensure_ascii=False))
        else:
            print_json(document)
    elif text:
        # color=True: click would strip ANSI sequences off a terminal, and a pipe gets the log as it is
        click.echo(visible(text) if console().is_terminal else text, nl=not text.endswith("\n"), color=True)


@click.command()
@click.argument("task_id")
@json_option
def runs(task_id: str) -> int:
    """List a task's runs, newest first: one row per attempt (every page)."""
    _print_all(state().client().runs(task_id), RUN_COLUMNS, empty=f"task {task_id} has no runs yet")
    return OK


@click.command()
@click.argument("task_id")
@json_option
def events(task_id: str) -> int:
    """List a task's events, oldest first (every page)."""
    _print_all(state().client().events(task_id), EVENT_COLUMNS, empty=f"task {task_id} has no events")
    return OK


def _print_all(items: Iterable[Any], columns: tuple[str, ...], *, empty: str) -> None:
    """Every item of a paged listing, as one last page (``next_cursor`` null)."""
    page = {"items": doc(list(items)), "next_cursor": None}
    print_page(page, columns, empty=empty, as_json=state().json)


@click.command()
@click.argument("task_id", required=False)
@click.option("--group", "-g", help="Cancel many tasks of this group instead of one: those of --id, or the newest.")
@click.option("--status", shell_complete=_complete_status, help="With --group: only tasks in this status.")
@click.option("--type", "type_", metavar="TYPE", help="With --group: only tasks of this type.")
@click.option("--id", "ids", multiple=True, metavar="ID", help="With --group: only this task (repeat).")
@click.option("--limit", type=click.IntRange(1, 1000), help="With --group: at most this many (default 100).")
@click.option("--dry-run", is_flag=True, help="With --group: say which tasks would be cancelled; change nothing.")
@json_option
def cancel(
    task_id: str | None,
    group: str | None,
    status: str | None,
    type_: str | None,
    ids: tuple[str, ...],
    limit: int | None,
    dry_run: bool,
) -> int:
    """Cancel the task TASK_ID, or with --group many of the group's tasks not yet ended (a running attempt is
    told to stop at its next heartbeat)."""
    many = bool(ids) or status is not None or type_ is not None or limit is not None or dry_run
    if group is None:
        if task_id is None or many:
            raise click.UsageError("give a TASK_ID, or --group (with --status, --type, --id, --limit, --dry-run)")
        _show_task(state().client().cancel(task_id), short=True)
        return OK
    if task_id is not None:
        raise click.UsageError("with --group, name tasks with --id, not as TASK_ID")
    outcome = (
        state()
        .client()
        .cancel_many(group, ids=list(ids) or None, status=status, type=type_, limit=limit, dry_run=dry_run)
    )
    print_outcome(outcome, state().json, done="cancelled", would="would cancel")
    return OK


@click.command()
@click.argument("task_id")
@json_option
def redrive(task_id: str) -> int:
    """Queue a failed task again with a fresh retry budget."""
    _show_task(state().client().redrive(task_id), short=True)
    return OK


@click.command()
@click.argument("task_id")
@json_option
def pause(task_id: str) -> int:
    """Pause a repeating task: it starts no attempt until resumed (an attempt running finishes first)."""
    _show_task(state().client().pause(task_id), short=True)
    return OK


@click.command()
@click.argument("task_id")
@json_option
def resume(task_id: str) -> int:
    """Resume a paused task with its next slot (the slots missed meanwhile are recorded as skipped)."""
    _show_task(state().client().resume(task_id), short=True)
    return OK


def _show_task(task: Any, *, short: bool = False) -> None:
    """The task as JSON, as fields, or (``short``) as one ``<id> <status>`` line."""
    document = doc(task)
    if state().json:
        print_json(document)
    elif short:
        requested = " (cancel requested)" if document.get("cancel_requested") else ""
        if document.get("paused_at") and document["status"] != "paused":
            requested += " (paused once this attempt ends)"
        click.echo(f"{document['id']} {document['status']}{requested}")
    else:
        print_fields(document)


COMMANDS = (submit, get, ls, watch, logs, runs, events, cancel, redrive, pause, resume)
