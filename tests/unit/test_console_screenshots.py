"""docs/console/ holds the screenshot of every page the browser tests capture, and the README links each one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "docs" / "console"


def taken() -> set[str]:
    """The names the browser tests give their screenshots (``screenshot(page, "<name>", ...)``)."""
    tests = (REPO / "tests" / "e2e" / "console").glob("test_*.py")
    return {name for path in tests for name in re.findall(r"screenshot\(\s*\w+,\s*\"([a-z0-9-]+)\"", path.read_text())}


def linked() -> set[str]:
    return set(re.findall(r"\(docs/console/([a-z0-9-]+)\.png\)", (REPO / "README.md").read_text()))


@pytest.fixture(autouse=True)
def _sources() -> None:
    if not (REPO / "tests" / "e2e" / "console").is_dir():
        pytest.skip("needs the repo's sources (not in a Pants sandbox)")


def test_the_browser_tests_take_a_screenshot_of_every_page() -> None:
    assert {"sign-in", "overview", "tasks", "task", "schedules", "dlq", "tasks-phone", "tasks-dark"} <= taken()


def test_each_screenshot_the_tests_take_is_in_docs_console_and_nothing_else_is() -> None:
    # Missing or stale? Regenerate them: make console-screenshots
    assert {p.stem for p in SHOTS.glob("*.png")} == taken()


def test_the_readme_links_every_screenshot() -> None:
    assert linked() == taken()
