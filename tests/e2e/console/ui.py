"""What the console's browser tests share: signing in, screenshots, reading a page as a user would.

Pages are found by role and accessible name (contract section 9), never by CSS paths.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, expect

#: Where the README's screenshots live; the tests rewrite them only when TQ_CONSOLE_SCREENSHOTS=1 (make
#: console-screenshots), so `make test` on a clean clone leaves the tree as it found it.
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "console"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
#: The stack's settings: heartbeats every second, so a cancelled sleep stops within about a second.
STACK_ENV = {"TQ_HEARTBEAT_S": "1"}
NAV_LINKS = ("Overview", "Tasks", "Schedules", "Dead letters")
#: Generous: the page is asserted, not its speed (a loaded 2-core machine runs other lanes beside these tests).
TIMEOUT_MS = 20_000
expect.set_options(timeout=TIMEOUT_MS)


def signed_in(page: Page, token: str) -> Page:
    """Sign ``page`` in with ``token`` through the sign-in form, as a user would; the page, showing the console."""
    page.goto("/ui/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    return page


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Token")).to_be_visible()


def screenshot(page: Page, name: str, elsewhere: Path) -> Path:
    """A full-page PNG of ``page`` as ``docs/console/<name>.png`` when TQ_CONSOLE_SCREENSHOTS=1, else under
    ``elsewhere`` (taken either way: a page that cannot be captured fails the test)."""
    folder = SCREENSHOTS if os.environ.get("TQ_CONSOLE_SCREENSHOTS") == "1" else elsewhere
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    assert path.stat().st_size > 0
    return path


def task_link(scope: Page | Locator, task_id: str) -> Locator:
    """The link to one task's page (its id is the link's text)."""
    return scope.get_by_role("link", name=task_id, exact=True)


def row_of(scope: Page | Locator, text: str) -> Locator:
    """The table rows holding ``text`` (a task id, an event type)."""
    return scope.get_by_role("row").filter(has_text=re.compile(re.escape(text)))


def log_control(scope: Page | Locator) -> Locator:
    """A run's ``Log`` control (contract section 9): a button or a link."""
    return scope.get_by_role("button", name="Log", exact=True).or_(scope.get_by_role("link", name="Log", exact=True))


def eventually(check: Callable[[], bool], timeout_s: float = TIMEOUT_MS / 1000) -> None:
    """Wait until ``check()`` holds (something the browser's click set off in the background)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"still not so after {timeout_s} s"
        time.sleep(0.1)


def submit(api: httpx.Client, type_: str, payload: Any, group: str = "team-a", **fields: Any) -> str:
    answer = api.post("/v1/tasks", json={"type": type_, "group": group, "payload": payload, **fields})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def in_an_hour() -> dict[str, Any]:
    """A repeating schedule whose first slot is an hour away: the task stays ``scheduled`` through a test."""
    return {"every_s": 3600, "start_at": (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")}


def events(api: httpx.Client, task_id: str) -> list[tuple[str, str]]:
    return [(e["type"], e["actor"]) for e in api.get(f"/v1/tasks/{task_id}/events").json()["items"]]
