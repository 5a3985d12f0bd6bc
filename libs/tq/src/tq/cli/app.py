"""The ``tq`` command group: global options, the state every command shares, and the one place where an
exception becomes an exit code and one line on stderr.

Exit codes: 0 success · 1 an awaited task ended ``failed``, ``cancelled`` or ``expired`` · 2 usage error ·
3 API or network error (and anything unexpected) · 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tq.cli.config import ConfigError, Target, resolve

if TYPE_CHECKING:
    from tq.client import Client

OK = 0
TASK_NOT_SUCCEEDED = 1
USAGE = 2
API = 3
INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


class Failure(click.ClickException):
    """Raised when the API answered but the command cannot do what was asked (say, logs of a task that has not
    run): exit 3, as for an API error."""

    exit_code = API


@dataclass
class State:
    """What the global options said, shared by every command through ``ctx.obj``.

    ``connect`` makes the client for a target and ``sleep`` pauses between polls and retries (tests pass their
    own)."""

    connect: Callable[[Target], Client] | None = None
    sleep: Callable[[float], None] = time.sleep
    json: bool = False
    url: str | None = None
    token: str | None = None
    profile: str | None = None
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        """The ``tq.Client`` of the resolved target, made once per invocation."""
        if self._client is None:
            target = resolve(self.url, self.token, self.profile)
            self._client = self.connect(target) if self.connect else _connect(target, self.sleep)
        return self._client

    def close(self) -> None:
        """Close the client if one was made."""
        if self._client is not None:
            self._client.close()
            self._client = None


def _connect(target: Target, sleep: Callable[[float], None]) -> Client:
    """The client's retries, but 3 sends (pauses of 0.5 and 1 s) instead of 5: someone at a terminal learns within
    about 1.5 s that the gateway is out of reach, and a 429 or 503 is still sent again after its ``Retry-After``."""
    from tq.client import Client  # httpx is imported only by commands that talk to a gateway
    from tq.retries import Retries

    return Client(url=target.url, token=target.token, retries=Retries(attempts=3), sleep=sleep)


def state() -> State:
    """The invocation's :class:`State`."""
    return click.get_current_context().find_object(State) or State()


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


def json_option(command: F) -> F:
    """``--json`` on a command too, so it is accepted after the command's own arguments (``tq ls --json``)."""
    return click.option(
        "--json",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_json,
        help="Print one JSON document, in the shapes of the HTTP API.",
    )(command)


class TqGroup(click.Group):
    """A click group whose ``main`` turns every failure into one line on stderr and an exit code."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line and exit with its code (never a traceback)."""
        extra.setdefault("obj", State())
        try:
            code = _run(lambda: super(TqGroup, self).main(args, prog_name, complete_var, False, **extra))
        finally:
            extra["obj"].close()
        if standalone_mode:
            sys.exit(code)
        return code


def _run(invoke: Callable[[], Any]) -> int:
    # Local import: tq.client pulls in httpx, which `tq completion` and `tq keys` do not need.
    from tq.cli.errors import describe

    try:
        result = invoke()
    except click.exceptions.NoArgsIsHelpError as error:
        click.echo(error.ctx.get_help() if error.ctx else error.format_message(), err=True)
        return USAGE
    except click.UsageError as error:
        where = error.ctx.command_path if error.ctx else "tq"
        return _fail(f"{where}: {_one_line(error.format_message())} (see '{where} --help')", USAGE)
    except ConfigError as error:
        return _fail(f"tq: {error}", USAGE)
    except click.ClickException as error:
        return _fail(f"tq: {_one_line(error.format_message())}", error.exit_code)
    except click.exceptions.Exit as error:
        return int(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        return _fail("tq: interrupted", INTERRUPTED)
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except Exception as error:  # noqa: BLE001 - the API's errors and any bug alike end as one line, exit 3
        return _fail(f"tq: {describe(error)}", API)
    return result if isinstance(result, int) else OK


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _fail(message: str, code: int) -> int:
    # The server's detail can quote what a client sent (a type name): no control character reaches the terminal.
    from tq.cli.render import visible

    with contextlib.suppress(BrokenPipeError):  # stderr closed too: nothing left to tell
        click.echo(visible(_one_line(message)), err=True)
    return code


def _quiet_broken_pipe() -> int:
    """The reader went away (``tq ls | head``): its choice, not an error. Point stdout at /dev/null so the
    interpreter's final flush does not complain either."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # not a real file (a test's capture): nothing to flush at exit
        pass
    finally:
        os.close(devnull)
    return OK
