"""The operator commands: dead letters, schedules, queues, the overview, API keys, and shell completion."""

from __future__ import annotations

import importlib
from typing import Any

import click

from tq.cli.app import API, OK, USAGE, json_option, state
from tq.cli.render import TASK_COLUMNS, doc, print_fields, print_json, print_outcome, print_page, print_table


@click.group()
def dlq() -> None:
    """Dead-lettered tasks (failed, retries exhausted)."""


@dlq.command(name="ls")
@click.option("--group", "-g", help="Only this group's dead letters.")
@click.option("--type", "type_", help="Only dead letters of this type.")
@click.option("--limit", type=click.IntRange(1, 200), help="Tasks on the page (1-200, default 50).")
@click.option("--cursor", help="The page after the one that gave this next_cursor.")
@json_option
def dlq_ls(group: str | None, type_: str | None, limit: int | None, cursor: str | None) -> int:
    """List dead letters, newest first: one page (--cursor reads the next)."""
    page = doc(state().client().dlq_page(group=group, limit=limit, cursor=cursor, type=type_))
    print_page(page, (*TASK_COLUMNS, "last_error"), empty="no dead letters", as_json=state().json)
    return OK


@dlq.command(name="redrive")
@click.option("--group", "-g", required=True, help="The group whose dead letters to redrive.")
@click.option("--id", "ids", multiple=True, metavar="ID", help="Only this task (repeat).")
@click.option("--type", "type_", help="Only dead letters of this type.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many tasks.")
@click.option("--dry-run", is_flag=True, help="Say which tasks would be redriven; change nothing.")
@json_option
def dlq_redrive(group: str, ids: tuple[str, ...], type_: str | None, limit: int | None, dry_run: bool) -> int:
    """Queue a group's dead letters again, each with a fresh retry budget."""
    outcome = state().client().redrive_dlq(group, ids=list(ids) or None, limit=limit, dry_run=dry_run, type=type_)
    print_outcome(outcome, state().json, done="redrove", would="would redrive")
    return OK


@click.command()
@click.option("--group", "-g", help="Only this group's schedules.")
@click.option("--type", "type_", help="Only schedules of this type.")
@click.option("--limit", type=click.IntRange(1, 200), help="Tasks on the page (1-200, default 50).")
@click.option("--cursor", help="The page after the one that gave this next_cursor.")
@json_option
def schedules(group: str | None, type_: str | None, limit: int | None, cursor: str | None) -> int:
    """List repeating tasks not yet ended (paused too) and one-off tasks waiting for their time, newest first."""
    page = doc(state().client().schedules_page(group=group, type=type_, limit=limit, cursor=cursor))
    print_page(page, (*TASK_COLUMNS, "schedule", "next_run_at"), empty="no schedules", as_json=state().json)
    return OK


@click.command()
@json_option
def queues() -> int:
    """Each pool's queues with their depth, in-flight and dead-letter counts."""
    listed = doc(state().client().queues())
    if state().json:
        print_json({"queues": listed})
    else:
        print_table(listed, ("name", "pool", "priority", "depth", "in_flight", "dlq_depth"), empty="no queues")
    return OK


@click.command()
@json_option
def overview() -> int:
    """The system at a glance: live services, the last 5 minutes' throughput, scheduler lag, dead letters, queues."""
    seen = doc(state().client().overview())
    if state().json:
        print_json(seen)
        return OK
    recent = seen["throughput"][-5:]
    scheduler = seen["scheduler"]
    print_fields(
        {
            "at": seen["at"],
            "replicas": " ".join(f"{service} {count}" for service, count in seen["replicas"].items()),
            "finished (5 min)": f"{sum(m['succeeded'] for m in recent)} succeeded, {sum(m['failed'] for m in recent)} "
            "failed",
            "scheduler lag_s": scheduler["lag_s"],
            "last pass age_s": scheduler["last_pass_age_s"],
            "dead letters": " ".join(f"{group} {count}" for group, count in seen["dead_letters"].items()) or None,
        }
    )
    rows = [{**queue, "executors": pool["executors"]} for pool in seen["pools"] for queue in pool["queues"]]
    columns = ("pool", "priority", "depth", "in_flight", "oldest_age_s", "dlq_depth", "executors")
    print_table(rows, columns, empty="no queues")
    return OK


_PASS_THROUGH: dict[str, Any] = {"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []}


@click.group()
def keys() -> None:
    """API keys, straight in the stack's table (TQ_PREFIX, TQ_ENDPOINT_URL): needs the gateway package.

    The same as tq-keys; 'tq keys create --help' shows a command's options."""


def _delegate(verb: str, summary: str) -> click.Command:
    @click.pass_context
    def run(ctx: click.Context) -> int:
        if state().json:
            raise click.UsageError("--json is not available: tq keys prints text, as tq-keys does", ctx)
        return _keys_cli([verb, *ctx.args])

    return json_option(click.Command(verb, callback=run, help=summary, context_settings=_PASS_THROUGH))


def _keys_cli(argv: list[str]) -> int:
    """Run ``tq_gateway.keys_cli``; its exit 1 (the store unreachable, no such key) is tq's 3."""
    try:
        keys_cli = importlib.import_module("tq_gateway.keys_cli")
    except ModuleNotFoundError as error:
        if error.name is None or not error.name.startswith("tq_gateway"):
            raise
        raise _Missing() from None
    code = int(keys_cli.main(argv, prog="tq keys"))
    return API if code == 1 else code


class _Missing(click.ClickException):
    exit_code = USAGE

    def __init__(self) -> None:
        super().__init__("tq keys talks to the stack's table directly: install tq-gateway (services/gateway) beside tq")


for _verb, _summary in (
    ("create", "Make a key and print its token (shown this once only)."),
    ("list", "Every key, without secrets."),
    ("revoke", "Revoke a key (gateways stop accepting it within 10 s)."),
):
    keys.add_command(_delegate(_verb, _summary))


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> int:
    """Print the shell completion script: eval "$(tq completion bash)" in ~/.bashrc."""
    from click.shell_completion import get_completion_class

    root = ctx.find_root()
    completer = get_completion_class(shell)
    assert completer is not None  # the choice allows only shells click knows
    script = completer(root.command, {}, root.info_name or "tq", "_TQ_COMPLETE").source()
    click.echo(script)
    return OK


COMMANDS = (dlq, schedules, queues, overview, keys, completion)
