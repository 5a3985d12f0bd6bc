"""The AWS API operations each service's code can make, derived from its source (the task roles are built from them).

Why derive instead of listing: a hand-written policy drifts from the code; this one cannot. The rules:

1. **Which code.** Starting from a service's entry modules (:data:`ENTRY_MODULES`), follow every ``import`` into
   first-party packages (``tqcore`` and the service's own ``tq_<service>``), parent packages included. Every
   module reached counts whole (a superset of what one run does, never less). ``tqcore.bootstrap``, which creates
   resources, must not be reached: production resources come from Pulumi (:func:`modules_of` reports it).
2. **What is a call.** A method call named like an operation of the DynamoDB, SQS or S3 botocore model
   (``x.transact_write_items(...)``), or an operation's name passed as a string argument
   (``table.call("get_item", ...)``: tqcore's ``Table`` dispatches with ``getattr``).
3. **Whose operation.** No operation name is shared by these three models (checked when loaded), so the
   name alone says which service it belongs to.
4. **Library code we drive.** A first-party class that subclasses a class of :data:`LIBRARIES` (the executor's
   broker and consumer subclass ``dramatiq_sqs``'s) also makes the calls of the inherited methods that can run:
   the base's public methods it does not override, what it calls through ``super()``, and the ``self.`` methods
   those reach (the subclass's overrides win). There, boto3 *resource* actions of the one AWS service the library
   drives count too (``queue.load()`` is ``GetQueueAttributes``); a resource action whose name means two of that
   service's operations (SQS ``delete``: a message's or a queue's) is an error, to be resolved here.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import boto3
import botocore.session
from botocore import xform_name

REPO = Path(__file__).resolve().parents[3]
AWS_SERVICES = ("dynamodb", "sqs", "s3")
SERVICES = ("gateway", "executor", "scheduler", "reaper")
#: Where each service's code starts. The gateway: gunicorn's config module and the app it serves. The executor:
#: its main, the modules its fork server preloads and the handler modules it ships (all named as strings, so no
#: ``import`` leads to them).
ENTRY_MODULES: dict[str, tuple[str, ...]] = {
    "gateway": ("tq_gateway.main", "tq_gateway.gunicorn_conf", "tq_gateway.app"),
    "executor": (
        "tq_executor.main",
        "tq_executor.forkserver_init",
        "tq_executor.isolation",
        "tq_executor.sandbox",
        "tq_executor.script",
        "tq_executor.demo",
    ),
    "scheduler": ("tq_scheduler.main",),
    "reaper": ("tq_reaper.main",),
}
#: Third-party packages whose AWS calls run on our behalf through subclasses of their classes, and the one AWS
#: service each drives.
LIBRARIES = {"dramatiq_sqs": "sqs"}
#: Creates resources: never part of a service (production resources are Pulumi's).
BOOTSTRAP = "tqcore.bootstrap"


@dataclass(frozen=True, order=True)
class Operation:
    """One API operation, e.g. ``Operation("dynamodb", "TransactWriteItems")``."""

    service: str
    name: str


@cache
def _operations() -> dict[str, Operation]:
    """snake_case operation name -> operation, over the three models (which share no name)."""
    session = botocore.session.get_session()
    found: dict[str, Operation] = {}
    for service in AWS_SERVICES:
        for name in session.get_service_model(service).operation_names:
            snake = xform_name(name)
            if snake in found:
                raise ValueError(f"{snake} is an operation of both {found[snake].service} and {service}")
            found[snake] = Operation(service, name)
    return found


@cache
def _resource_actions(service: str) -> dict[str, Operation | None]:
    """snake_case boto3 resource action (and ``load``) of ``service`` -> operation; ``None`` when a name means
    several operations (no service: no actions)."""
    actions: dict[str, set[Operation]] = {}
    paths = (Path(boto3.__file__).parent / "data" / service).glob("*/resources-1.json") if service else []
    for path in paths:
        model = json.loads(path.read_text())
        for resource in [model["service"], *model["resources"].values()]:
            for name, action in resource.get("actions", {}).items():
                actions.setdefault(xform_name(name), set()).add(Operation(service, action["request"]["operation"]))
            if "load" in resource:
                actions.setdefault("load", set()).add(Operation(service, resource["load"]["request"]["operation"]))
    return {name: ops.pop() if len(ops) == 1 else None for name, ops in actions.items()}


def _source_roots() -> list[Path]:
    return [REPO / "libs" / "tqcore" / "src", *sorted((REPO / "services").glob("*/src"))]


def _module_file(module: str, roots: list[Path]) -> Path | None:
    parts = module.split(".")
    for root in roots:
        for candidate in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate
    return None


def _imported(tree: ast.Module, module: str, is_package: bool) -> Iterator[str]:
    """Every module name an import statement in ``tree`` may load (``from a import b``: ``a`` and ``a.b``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def modules_of(service: str) -> dict[str, Path]:
    """The first-party modules a service's code can load, by name."""
    roots = _source_roots()
    first_party = ("tqcore", f"tq_{service}")
    found: dict[str, Path] = {}
    pending = list(ENTRY_MODULES[service])
    while pending:
        name = pending.pop()
        if name in found or name.split(".")[0] not in first_party:
            continue
        path = _module_file(name, roots)
        if path is None:
            continue  # ``from a import some_function``: not a module
        found[name] = path
        parts = name.split(".")
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]
        pending += _imported(ast.parse(path.read_text()), name, path.name == "__init__.py")
    return found


def _calls_in(node: ast.AST, *, resources_of: str = "") -> Iterator[Operation]:
    """Operations named by method calls (and ``resources_of`` an AWS service, its boto3 resource actions) or by
    string arguments."""
    operations, actions = _operations(), _resource_actions(resources_of)
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        if isinstance(call.func, ast.Attribute):
            name = call.func.attr
            if name in operations:
                yield operations[name]
            elif name in actions:
                operation = actions[name]
                if operation is None:
                    raise ValueError(
                        f"resource action {name!r} means several operations: add a rule (line {call.lineno})"
                    )
                yield operation
        for arg in call.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value in operations:
                yield operations[arg.value]


def _library_calls(tree: ast.Module) -> Iterator[Operation]:
    """The calls inherited library methods make for each first-party subclass of a :data:`LIBRARIES` class."""
    imported = {
        alias.asname or alias.name: f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in LIBRARIES
        for alias in node.names
    }
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for base in cls.bases:
            if isinstance(base, ast.Name) and base.id in imported:
                yield from _inherited_calls(cls, *imported[base.id].rsplit(".", 1))


def _inherited_calls(subclass: ast.ClassDef, module: str, base_name: str) -> Iterator[Operation]:
    base = _library_class(module, base_name)
    methods = {f.name: f for f in base.body if isinstance(f, ast.FunctionDef)}
    overridden = {f.name for f in subclass.body if isinstance(f, ast.FunctionDef)}
    supered = {
        call.func.attr
        for call in ast.walk(subclass)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Call)
        and isinstance(call.func.value.func, ast.Name)
        and call.func.value.func.id == "super"
    }
    public = {name for name in methods if not name.startswith("_") or (name.startswith("__") and name.endswith("__"))}
    pending = [name for name in (public - overridden) | supered if name in methods]
    reached: set[str] = set()
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached.add(name)
        yield from _calls_in(methods[name], resources_of=LIBRARIES[module.split(".")[0]])
        for call in ast.walk(methods[name]):
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and isinstance(call.func.value, ast.Name)
                and call.func.value.id == "self"
                and call.func.attr in methods
                and call.func.attr not in overridden
            ):
                pending.append(call.func.attr)


def _library_class(module: str, name: str) -> ast.ClassDef:
    top = importlib.util.find_spec(module.split(".")[0])
    if top is None or not top.submodule_search_locations:
        raise ModuleNotFoundError(module)
    path = Path(next(iter(top.submodule_search_locations))).joinpath(*module.split(".")[1:]).with_suffix(".py")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node
    raise LookupError(f"{module}.{name}")


@cache
def operations_of(service: str) -> frozenset[Operation]:
    """Every AWS operation the service's code can make."""
    found: set[Operation] = set()
    for path in modules_of(service).values():
        tree = ast.parse(path.read_text())
        found.update(_calls_in(tree))
        found.update(_library_calls(tree))
    return frozenset(found)
