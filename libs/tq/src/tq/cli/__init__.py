"""``tq``, the command line of tq: tasks, their runs, logs and events, dead letters, queues and API keys.

Every command talks to the gateway through :class:`tq.Client`; ``--json`` prints what the HTTP API answers.
Installed with the ``cli`` extra (``pip install 'tq-sdk[cli]'``) as the console script ``tq``.
"""

from __future__ import annotations

import click

from tq.cli import admin, tasks
from tq.cli.app import State, TqGroup, json_option


@click.group(name="tq", cls=TqGroup, context_settings={"help_option_names": ["-h", "--help"]})
# The environment and the profile file are read by tq.cli.config.resolve (flag > env > profile > default).
@click.option("--url", help="The gateway [env TQ_URL; default http://127.0.0.1:8080].")
@click.option("--token", help="The API token to send [env TQ_TOKEN].")
@click.option("--profile", help="A profile of $XDG_CONFIG_HOME/tq/config.toml [env TQ_PROFILE].")
@json_option
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, profile: str | None) -> None:
    """Submit, follow and manage tq tasks from the terminal.

    Exit codes: 0 success, 1 an awaited task ended failed, cancelled or expired, 2 usage error, 3 API or
    network error."""
    current = ctx.ensure_object(State)
    current.url, current.token, current.profile = url, token, profile


for _command in (*tasks.COMMANDS, *admin.COMMANDS):
    cli.add_command(_command)


def main() -> None:
    """The console script ``tq``."""
    cli.main(prog_name="tq")


__all__ = ["cli", "main"]
