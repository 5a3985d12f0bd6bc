"""Fixtures of the console's browser tests: Debian's Chromium driven by Playwright (one browser per session), a
fresh browser context per test (its own cookies), one real stack for all of them (``tests/conftest.py``'s
machinery; each test makes the tasks it looks at, so they share it: two stacks would cost ~25 s more).

Never ``playwright install``: the browser is Debian's (``scripts/install-chromium.sh``; ``TQ_CHROMIUM`` names
another binary).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, Playwright, sync_playwright

from tests.conftest import TOKENS, running_stack
from tests.e2e.console.ui import DESKTOP, PHONE, STACK_ENV, TIMEOUT_MS
from tqdev.stack import Stack

CHROMIUM = os.environ.get("TQ_CHROMIUM", "/usr/bin/chromium")
# TOOLING-FACTS "Browsers": no sandbox (root, no user namespaces here), no GPU, nothing phoning home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no browser at {CHROMIUM}: run scripts/install-chromium.sh (make test-console does)")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


#: A task type whose run log says what its payload says: hostile text reaches a log this way. With ``fail`` it then
#: fails with that message; with ``later_runs_sleep_s`` a repeating task's runs after its first sleep that long (so a
#: page shows a running repeating task that has a finished run with a log).
SAY = """
from tq import TaskContext, handler


@handler("console.say")
def say(ctx: TaskContext) -> dict:
    for line in ctx.payload["lines"]:
        ctx.log(f"said: {line}")
    ctx.progress(1.0, "all said")
    if ctx.payload.get("fail"):
        raise RuntimeError(ctx.payload["fail"])
    if ctx.payload.get("later_runs_sleep_s") and not ctx.run_id.startswith("1."):
        ctx.sleep(ctx.payload["later_runs_sleep_s"])
    return {"said": len(ctx.payload["lines"])}
"""


@pytest.fixture(scope="package")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One executor (heartbeats every second: a cancelled sleep stops within about a second) that also runs
    ``console.say``."""
    modules = tmp_path_factory.mktemp("handlers")
    (modules / "console_say.py").write_text(SAY)
    env = {
        **STACK_ENV,
        "TQ_HANDLER_MODULES": "tq_executor.demo,console_say",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")])),
    }
    with running_stack(emulator, tmp_path_factory.mktemp("stack"), executors=1, env=env) as started:
        yield started


@pytest.fixture
def api(stack: Stack) -> Iterator[Callable[[str], httpx.Client]]:
    """``api("alice")``: the HTTP API as a dev principal, to set a scene up and to check what a click did."""
    made: list[httpx.Client] = []

    def as_user(user: str) -> httpx.Client:
        made.append(httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {TOKENS[user]}"}, timeout=10))
        return made[-1]

    yield as_user
    for c in made:
        c.close()


@pytest.fixture
def new_page(chromium: Browser, stack: Stack) -> Iterator[Callable[..., Page]]:
    """``new_page(**context_options)``: a page in a browser context of its own (no cookies shared with any other),
    at 1280x800 unless the options say otherwise, addressed relative to the stack's gateway.

    The console opens no dialog (a hidden ``confirm()`` is dismissed by Playwright's default, and the action it
    guarded would silently not happen): any dialog is dismissed and fails the test, as do uncaught script errors
    and Content Security Policy violations (the console's own assets must run under its own policy).
    """
    contexts = []
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            problems.append(f"CSP: {message.text}")

    def on_dialog(dialog: Dialog) -> None:
        problems.append(f"dialog ({dialog.type}): {dialog.message}")
        dialog.dismiss()

    def make(**options: Any) -> Page:
        context = chromium.new_context(**{"base_url": stack.url, "viewport": DESKTOP, **options})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        page.on("dialog", on_dialog)
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not problems, problems


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    """A desktop page (1280x800)."""
    return new_page()


@pytest.fixture
def phone_page(new_page: Callable[..., Page]) -> Page:
    """A phone's page (390x844, a mobile viewport: the page's own ``<meta name="viewport">`` decides its width)."""
    return new_page(viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2)


@pytest.fixture
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go unless TQ_CONSOLE_SCREENSHOTS=1 sends them to docs/console/."""
    return tmp_path_factory.getbasetemp() / "console-screenshots"
