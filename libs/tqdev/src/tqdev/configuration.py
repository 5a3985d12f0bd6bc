"""docs/CONFIGURATION.md, generated: every ``TQ_*`` setting of the settings classes (their fields and ``#:``
comments) and those read from the environment elsewhere (the table below, checked against the code).

    python -m tqdev.configuration          # rewrite docs/CONFIGURATION.md (make configuration)
    python -m tqdev.configuration --check  # exit 1 if it is stale (tests/unit/test_configuration.py)
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from tq_executor.settings import ExecutorSettings
from tq_gateway.settings import GatewaySettings
from tq_reaper.settings import ReaperSettings
from tq_scheduler.settings import SchedulerSettings
from tqcore.bootstrap import BootstrapSettings
from tqcore.settings import CoreSettings

REPO = Path(__file__).resolve().parents[4]
DOC = REPO / "docs" / "CONFIGURATION.md"
#: Each settings class and the services that read it (a subclass's own fields only: the core's are shared).
CLASSES: list[tuple[type[BaseSettings], str]] = [
    (CoreSettings, "all four services"),
    (GatewaySettings, "gateway"),
    (ExecutorSettings, "executor"),
    (SchedulerSettings, "scheduler"),
    (ReaperSettings, "reaper"),
    (BootstrapSettings, "tq-bootstrap"),
]
#: Settings read straight from the environment, outside the classes: name -> (who reads it, default, meaning).
OUTSIDE: dict[str, tuple[str, str, str]] = {
    "TQ_LOG_LEVEL": ("all four services", "`INFO`", "the root logger's level (`DEBUG`, `INFO`, `WARNING`, ...)"),
    "TQ_DEMO_EXECUTION_LOG": (
        "executor (demo types)",
        "unset",
        "a file the demo types append each execution to (task id, attempt, worker): the tests' witness",
    ),
    "TQ_EXECUTORS": ("`make run` (tq-local)", "`2`", "executor processes the local stack starts"),
    "TQ_SCHEDULERS": ("`make run` (tq-local)", "`1`", "scheduler processes the local stack starts"),
    "TQ_POOL_EXECUTORS": (
        "`make run` (tq-local)",
        "unset",
        "one executor of each other pool with its handler modules: `pool=mod[,mod];pool2=mod` (docs/HANDLERS.md)",
    ),
    "TQ_RUN_DIR": ("`make run` (tq-local)", "a new temp dir", "where the local stack keeps its logs and state"),
    "TQ_EMULATOR_PORT": ("`make run` (tq-local)", "`4566`", "the port of the emulator the local stack starts"),
    "TQ_EMULATOR_BIN": ("`make run`, tests", "`.venv-emu/bin`", "where the emulators' executables are"),
    "TQ_MONITORING": ("`make run`", "unset", "`1`: also Prometheus and Alertmanager on loopback"),
    "TQ_TEST_EMULATOR": ("tests", "`ministack`", "the emulator the tests start: `ministack` or `moto`"),
    "TQ_TEST_ENDPOINT": ("tests", "unset", "an AWS endpoint the tests use instead of starting an emulator"),
    "TQ_CHROMIUM": (
        "`make test-console`",
        "`/usr/bin/chromium`",
        "the Chromium the browser tests drive (scripts/install-chromium.sh installs Debian's when it is missing)",
    ),
    "TQ_CONSOLE_SCREENSHOTS": (
        "`make test-console`",
        "unset",
        "`1`: the browser tests write their screenshots to docs/console/ (`make console-screenshots`)",
    ),
    "TQ_PANTS_PYTHON": ("`make pants`", "from pyenv", "the Python 3.9 interpreter Pants runs on"),
    "TQ_PANTS_VENV": ("`make pants`", "`.pants-venv`", "where Pants is installed"),
    "TQ_URL": ("`tq.Client`, `tq`", "`http://127.0.0.1:8080`", "the API the client calls when not given `url`"),
    "TQ_TOKEN": ("`tq.Client`, `tq`", "unset", "the bearer token the client sends when not given `token`"),
    "TQ_PROFILE": (
        "`tq`",
        "`default` if the file has it",
        "the profile of `$XDG_CONFIG_HOME/tq/config.toml` the command line reads when not given `--profile`",
    ),
}
#: Where settings are read outside the classes: the product, its local stack, its build and test harness.
SOURCES = [
    "libs/*/src/**/*.py",
    "services/*/src/**/*.py",
    "scripts/*.sh",
    "Makefile",
    "conftest.py",
    "tests/conftest.py",
    "tests/e2e/console/*.py",
]
READ = re.compile(
    r"(?:environ(?:\.get|\.setdefault|\.pop)?\(\s*|environ\[\s*|getenv\(\s*)[\"'](TQ_[A-Z0-9_]+)[\"']"
    r"|\$\{?\(?(TQ_[A-Z0-9_]+)"
)
UNITS = {"_s": "seconds", "_ms": "milliseconds", "_bytes": "bytes", "_days": "days", "_rps": "per second"}


@dataclass(frozen=True)
class Setting:
    """One row of the reference."""

    variables: list[str]
    service: str
    default: str
    kind: str
    unit: str
    meaning: str


def field_comments(cls: type) -> dict[str, str]:
    """Field name -> its ``#:`` comment. A field without one, right below a field of the same family (the same
    first word, as ``jwt_secret`` below ``jwt_algorithm``, or the same last two, as ``tls_handshake_timeout_s``
    below ``request_body_timeout_s``), shares that field's comment."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    (node,) = ast.parse(source).body
    assert isinstance(node, ast.ClassDef)
    comments: dict[str, str] = {}
    previous: tuple[str, str, int] | None = None  # (name, comment, end line) of the field above
    for item in node.body:
        if not isinstance(item, ast.AnnAssign) or not isinstance(item.target, ast.Name):
            continue
        above: list[str] = []
        n = item.lineno - 2
        while n >= 0 and lines[n].strip().startswith("#:"):
            above.insert(0, lines[n].strip()[2:].strip())
            n -= 1
        comment = " ".join(above)
        name = item.target.id
        if not comment and previous is not None and previous[2] == item.lineno - 1 and _family(previous[0], name):
            comment = previous[1]
        comments[name] = comment
        previous = (name, comment, item.end_lineno or item.lineno)
    return comments


def _family(above: str, name: str) -> bool:
    a, b = above.split("_"), name.split("_")
    return a[0] == b[0] or (len(a) > 2 and len(b) > 2 and a[-2:] == b[-2:])


def settings() -> Iterator[Setting]:
    """Every field of every class, in class then source order."""
    for cls, service in CLASSES:
        comments = field_comments(cls)
        for name in comments:
            field = cls.model_fields[name]
            meaning = comments[name] or (field.description or "")
            yield Setting(variables(name, field), service, default(field), kind(field.annotation), unit(name), meaning)


def variables(name: str, field: FieldInfo) -> list[str]:
    """The environment variables a field is read from (its aliases, else ``TQ_<NAME>``)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [str(alias) if isinstance(alias, str) else f"TQ_{name.upper()}"]


def default(field: FieldInfo) -> str:
    value = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
    if value is None or value is PydanticUndefined:
        return "unset"
    if isinstance(value, list | tuple):
        return f"`{','.join(map(str, value))}`"
    if isinstance(value, dict):
        return f"`{json.dumps(value)}`"
    if isinstance(value, SecretStr):
        return "unset"
    return f"`{value:g}`" if isinstance(value, float) else f"`{value}`"


def kind(annotation: Any) -> str:
    """A field's type as a reader sets it."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return kind(args[0])
    if origin in (typing.Union, types.UnionType):
        return kind(args[0]) if len(args) == 1 else " or ".join(kind(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return "comma-separated list"
    if origin is dict:
        return "JSON object"
    names = {int: "integer", float: "number", str: "text", bool: "boolean", Path: "path", SecretStr: "secret text"}
    return names.get(annotation, "JSON")


def unit(name: str) -> str:
    return next((u for suffix, u in UNITS.items() if name.endswith(suffix)), "")


def outside_reads() -> dict[str, list[str]]:
    """``TQ_*`` variables read from the environment outside the settings classes -> the files reading them."""
    found: dict[str, list[str]] = {}
    for pattern in SOURCES:
        for path in sorted(REPO.glob(pattern)):
            for match in READ.finditer(path.read_text()):
                found.setdefault(match[1] or match[2], []).append(str(path.relative_to(REPO)))
    return found


def render() -> str:
    """The whole document."""
    rows = list(settings())
    out = [
        "# Configuration",
        "",
        "Every `TQ_*` setting, by the service that reads it. Generated from the settings classes (their fields and",
        "`#:` comments) by `libs/tqdev/src/tqdev/configuration.py`: do not edit by hand; change the class, then",
        "`make configuration` (`python -m tqdev.configuration`). A unit test fails while this file is stale.",
        "",
        "Services read their settings once, at start, from the environment; a bad value stops the service with one",
        "line naming the variable. Durations are in the unit named (`_s` seconds, `_ms` milliseconds). On AWS,",
        "`tq:env` in the Pulumi stack sets them for every service, and `tq:pools.<pool>.env` for one pool's",
        "executors (docs/DEPLOY.md).",
    ]
    for _, service in CLASSES:
        out += ["", f"## {service[0].upper()}{service[1:]}", ""]
        out += ["| variable | default | type | unit | meaning |", "|---|---|---|---|---|"]
        for row in (r for r in rows if r.service == service):
            names = " or ".join(f"`{v}`" for v in row.variables)
            out.append(f"| {names} | {row.default} | {row.kind} | {row.unit} | {_markdown(row.meaning)} |")
    out += [
        "",
        "## Read outside the settings classes",
        "",
        "| variable | read by | default | meaning |",
        "|---|---|---|---|",
    ]
    out += [f"| `{name}` | {who} | {value} | {meaning} |" for name, (who, value, meaning) in sorted(OUTSIDE.items())]
    return "\n".join(out) + "\n"


def _markdown(comment: str) -> str:
    """A ``#:`` comment (reStructuredText literals) as a table cell."""
    return comment.replace("``", "`").replace("|", "\\|")


def main(argv: list[str] | None = None) -> int:
    """Write docs/CONFIGURATION.md, or with ``--check`` say whether it is current."""
    args = sys.argv[1:] if argv is None else argv
    text = render()
    if "--check" in args:
        if DOC.read_text() != text:
            print(f"{DOC.relative_to(REPO)} is stale: run make configuration", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
