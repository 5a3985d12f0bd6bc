"""What a ``script`` task may run: the operator's allow-list of programs and of the arguments each accepts.

One pure check (:meth:`ScriptAllowList.check`) serves the gateway at submit and at PATCH of a payload, and the
executor again right before it runs the program (the list may have changed in between). An argument is accepted
only if it fully matches the pattern its rule gives for its position (``args``) or for any further position
(``rest``): a list that names no pattern for an argument refuses it, so nothing an operator did not foresee — an
option naming a file, say — gets through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator, model_validator

from tqcore.domain.errors import InvalidPayload

#: The task type whose payload this checks.
SCRIPT_TYPE = "script"
#: Bounds no allow-list can lift: argument count and length (tenant input meets operator patterns here).
MAX_ARGS = 256
MAX_ARG_CHARS = 4096
#: A program is named by a plain word (no path: where it lives is the operator's choice, not the tenant's).
PROGRAM_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}"

Pattern = Annotated[str, Field(min_length=1, max_length=1000)]


class ProgramRule(BaseModel):
    """What one program accepts: a pattern per leading position, one for any further argument, and counts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: ``args[i]`` must fully match argument ``i`` (regular expressions, Python syntax).
    args: tuple[Pattern, ...] = ()
    #: Every argument after the positional ones must fully match this; ``None``: no further argument.
    rest: Pattern | None = None
    min_args: int = Field(default=0, ge=0, le=MAX_ARGS)
    #: Defaults to ``len(args)`` without ``rest``, else to ``MAX_ARGS``.
    max_args: int | None = Field(default=None, ge=0, le=MAX_ARGS)
    #: The program's absolute path; ``None``: looked up on the scripts' ``PATH``.
    path: str | None = Field(default=None, pattern=r"^/[^\x00]*$", max_length=4096)

    @field_validator("args", "rest")
    @classmethod
    def _compiles(cls, value: Any) -> Any:
        for pattern in value if isinstance(value, tuple) else [value] if value is not None else []:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"not a regular expression: {pattern!r} ({error})") from None
        return value

    @model_validator(mode="after")
    def _counts_agree(self) -> Self:
        if self.min_args > self.most:
            raise ValueError("min_args exceeds the arguments the rule can accept")
        return self

    @property
    def most(self) -> int:
        """The largest argument count this rule accepts."""
        if self.max_args is not None:
            return self.max_args if self.rest is not None else min(self.max_args, len(self.args))
        return MAX_ARGS if self.rest is not None else len(self.args)

    @cached_property
    def _compiled(self) -> tuple[list[re.Pattern[str]], re.Pattern[str] | None]:
        return [re.compile(p) for p in self.args], re.compile(self.rest) if self.rest is not None else None

    def refusal(self, position: int, argument: str) -> str | None:
        """Why argument ``position`` (0 = the first after the program) is refused, or ``None``."""
        positional, rest = self._compiled
        pattern = positional[position] if position < len(positional) else rest
        if pattern is None or position >= self.most:
            return f"argument {position + 1} ({_shown(argument)}) is one more than the program accepts ({self.most})"
        if pattern.fullmatch(argument) is None:
            return f"argument {position + 1} ({_shown(argument)}) is not allowed: it must match {pattern.pattern!r}"
        return None


class ScriptAllowList(BaseModel):
    """The programs a ``script`` task may run, by the name it gives as ``argv[0]``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    programs: dict[Annotated[str, Field(pattern=f"^{PROGRAM_NAME}$")], ProgramRule] = Field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | Mapping[str, Any], *, published: bool = False) -> ScriptAllowList:
        """From the operator's JSON (``{"programs": {name: rule}}`` or just ``{name: rule}``); ``ValueError``
        with one clear line if it is not a valid list. ``published``: a list read back from the type catalog
        (``{"programs": ...}``), where fields a newer executor added are ignored — during a rolling deploy
        the gateway still checks submits, and every executor checks again against its own list."""
        try:
            data = json.loads(raw) if isinstance(raw, str) else dict(raw)
        except json.JSONDecodeError as error:
            raise ValueError(f"the script allow-list is not JSON: {error}") from None
        if not isinstance(data, dict):
            raise ValueError("the script allow-list must be a JSON object of programs")
        if published and "programs" in data:
            data = {"programs": data["programs"]}
        elif set(data) != {"programs"}:
            data = {"programs": data}
        try:
            return cls.model_validate(data, extra="ignore" if published else None)
        except ValidationError as error:
            first = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"the script allow-list is not valid at {where}: {first['msg']}") from None

    def to_json(self) -> str:
        """The canonical JSON the executors publish in the type catalog."""
        return self.model_dump_json(exclude_defaults=True)

    def errors(self, payload: JsonValue) -> list[dict[str, Any]]:
        """Every reason the payload may not run, as ``{loc, msg}`` (``loc`` from the request body); none: fine."""
        argv = _argv(payload)
        if argv is None:
            return [_error(["argv"], "argv must be a non-empty list of strings")]
        if len(argv) > MAX_ARGS + 1:
            return [_error(["argv"], f"argv has {len(argv)} items; at most {MAX_ARGS + 1} are accepted")]
        program, arguments = argv[0], argv[1:]
        rule = self.programs.get(program)
        if rule is None:
            allowed = ", ".join(sorted(self.programs)) or "none"
            return [_error(["argv", 0], f"program {_shown(program)} is not on the allow-list (allowed: {allowed})")]
        found: list[dict[str, Any]] = []
        for position, argument in enumerate(arguments):
            if len(argument) > MAX_ARG_CHARS or "\0" in argument:
                found.append(_error(["argv", position + 1], f"argument {position + 1} is too long or holds NUL"))
            elif why := rule.refusal(position, argument):
                found.append(_error(["argv", position + 1], f"{program}: {why}"))
        if len(arguments) < rule.min_args:
            found.append(_error(["argv"], f"{program} needs at least {rule.min_args} arguments"))
        return found

    def check(self, payload: JsonValue) -> list[str]:
        """The payload's ``argv`` if it may run; else raise ``InvalidPayload`` naming every refused part."""
        if found := self.errors(payload):
            raise InvalidPayload("; ".join(e["msg"] for e in found), errors=found)
        argv = _argv(payload)
        assert argv is not None  # errors() found none
        return argv


def _argv(payload: JsonValue) -> list[str] | None:
    """The payload's ``argv`` if it is a non-empty list of strings."""
    argv = payload.get("argv") if isinstance(payload, dict) else None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return None
    return [a for a in argv if isinstance(a, str)]


def _error(loc: list[str | int], msg: str) -> dict[str, Any]:
    return {"loc": ["payload", *loc], "msg": msg}


def _shown(value: str) -> str:
    """A tenant's string quoted for a message, cut short."""
    return repr(value if len(value) <= 60 else value[:57] + "...")
