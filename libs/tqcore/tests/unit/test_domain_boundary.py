"""The domain stays pure: it imports nothing of the infrastructure and defines no infrastructure error."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest

import tqcore.domain
from tqcore import errors as infrastructure
from tqcore.domain import errors as domain_errors

pytestmark = pytest.mark.unit

DOMAIN = Path(tqcore.domain.__file__).parent
#: What the domain may import besides the standard library and itself: validation and cron arithmetic.
ALLOWED = {"pydantic", "croniter"}


def _imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", sorted(DOMAIN.glob("*.py")), ids=lambda p: p.name)
def test_a_domain_module_imports_only_the_standard_library_the_domain_and_validation(path: Path) -> None:
    outside = {
        name
        for name in _imported(path)
        if name.split(".")[0] not in sys.stdlib_module_names | ALLOWED | {"__future__"}
        and not name.startswith("tqcore.domain")
    }
    assert not outside


def test_a_dependency_being_down_is_not_a_domain_error_but_still_a_tq_error() -> None:
    defined = {
        name
        for name, kind in inspect.getmembers(domain_errors, inspect.isclass)
        if kind.__module__ == domain_errors.__name__
    }
    assert not {name for name in defined if name.endswith("Unavailable")}
    for kind in (infrastructure.StoreUnavailable, infrastructure.QueueUnavailable):
        assert issubclass(kind, domain_errors.TqError)
