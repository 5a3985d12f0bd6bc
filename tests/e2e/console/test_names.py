"""An audit of every console page for the names contract section 9 gives its parts, found the way an acceptance
test finds them: with Playwright's *default* matching (``get_by_role(role, name=...)`` and ``get_by_text`` match a
case-insensitive substring; locators are strict, so a name that matches two elements is as broken as a missing
one). Each name resolves to exactly one element where the contract puts it, and to none where the API would not
allow the action (a ``Back to dead letters`` link would make ``Dead letters`` ambiguous; a ``Log`` column header
would make a task page's first ``Log`` text something other than a run's control)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import wait_for_status
from tests.e2e.console.ui import NAV_LINKS, eventually, in_an_hour, row_of, signed_in, submit

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

#: The buttons the contract names; each page has exactly the ones it says, once.
BUTTONS = ("Sign in", "Sign out", "Cancel", "Redrive", "Pause", "Resume")


def names_on(page: Page, *, buttons: Iterable[str], signed_in: bool = True) -> None:
    """``page`` has each of ``buttons`` exactly once and none of the contract's other buttons; signed in, each
    navigation link exactly once and no ``Token`` field; signed out, the ``Token`` field and no navigation."""
    wanted = set(buttons)
    assert wanted <= set(BUTTONS), wanted
    for name in BUTTONS:
        expect(page.get_by_role("button", name=name), f"button {name!r} on {page.url}").to_have_count(
            1 if name in wanted else 0
        )
        if name in wanted:
            expect(page.get_by_role("button", name=name)).to_be_visible()
    for name in NAV_LINKS:
        expect(page.get_by_role("link", name=name), f"link {name!r} on {page.url}").to_have_count(1 if signed_in else 0)
    if signed_in:
        for name in NAV_LINKS:
            expect(page.get_by_role("link", name=name)).to_be_visible()
    expect(page.get_by_label("Token")).to_have_count(0 if signed_in else 1)


def first_log_shows(page: Page, text: str) -> None:
    """The page's first ``Log`` text is a run's ``Log`` control, and clicking it shows ``text`` on the page."""
    log = page.get_by_text("Log").first
    expect(log).to_have_role("link")
    expect(log).to_have_accessible_name("Log")
    expect(page.get_by_text(text)).to_be_hidden()
    log.click()
    expect(page.get_by_text(text)).to_be_visible()


def test_every_page_names_its_parts_as_the_contract_does_with_playwrights_default_matching(
    new_page: Callable[..., Page], api: Callable[[str], httpx.Client]
) -> None:
    # Given bob's tasks (team-b: alice's dead letters stay the redrive test's own): a repeating task whose first
    # run has ended and whose second is running, a dead letter, a paused schedule, a one-off that succeeded
    bob = api("bob")
    repeating = submit(
        bob, "console.say", {"lines": ["the first run spoke"], "later_runs_sleep_s": 60}, group="team-b",
        schedule={"every_s": 2},
    )  # fmt: skip
    dead = submit(
        bob, "console.say", {"lines": ["before failing"], "fail": "on purpose"}, group="team-b",
        retry={"max_retries": 0},
    )  # fmt: skip
    paused = submit(bob, "echo", {"paused": True}, group="team-b", schedule=in_an_hour())
    assert bob.post(f"/v1/tasks/{paused}/pause").status_code == 200
    done = submit(bob, "echo", {"once": True}, group="team-b")
    wait_for_status(bob, dead, {"failed"}, timeout_s=30)
    wait_for_status(bob, done, {"succeeded"}, timeout_s=30)

    def running_again() -> bool:
        task = bob.get(f"/v1/tasks/{repeating}").json()
        return bool(task["status"] == "running" and task["run_count"] >= 1)

    eventually(running_again, timeout_s=30)
    try:
        # The sign-in form: the Token field and Sign in, nothing of a session's
        page = new_page()
        page.goto("/ui/")
        names_on(page, buttons={"Sign in"}, signed_in=False)
        # The overview: navigation and Sign out, no action
        signed_in(page, "dev-bob")
        names_on(page, buttons={"Sign out"})
        # The tasks table: each task's id is a link named by it (once), its row shows its type and status
        page.get_by_role("link", name="Tasks").click()
        names_on(page, buttons={"Sign out"})
        for task_id, type_, status in ((done, "echo", "succeeded"), (dead, "console.say", "failed")):
            expect(page.get_by_role("link", name=task_id)).to_have_count(1)
            expect(row_of(page, task_id)).to_contain_text(type_)
            expect(row_of(page, task_id)).to_contain_text(status)
        # A running repeating task: Cancel and Pause; its first Log is its ended run's, and it shows that run's log
        page.get_by_role("link", name=repeating).click()
        names_on(page, buttons={"Sign out", "Cancel", "Pause"})
        expect(page.get_by_text("running", exact=True).first).to_be_visible()
        first_log_shows(page, "said: the first run spoke")
        # A dead letter: Redrive only, and its failed run's Log
        page.goto(f"/ui/tasks/{dead}")
        names_on(page, buttons={"Sign out", "Redrive"})
        first_log_shows(page, "said: before failing")
        # A paused schedule: Resume (and Cancel), no Pause; a one-off that ended: no action at all
        page.goto(f"/ui/tasks/{paused}")
        names_on(page, buttons={"Sign out", "Cancel", "Resume"})
        page.goto(f"/ui/tasks/{done}")
        names_on(page, buttons={"Sign out"})
        # The schedules: each row has the one action its status allows
        page.get_by_role("link", name="Schedules").click()
        names_on(page, buttons={"Sign out", "Resume", "Pause"})
        for task_id, action, status in ((repeating, "Pause", "running"), (paused, "Resume", "paused")):
            row = row_of(page, task_id)
            expect(row).to_have_count(1)
            expect(row).to_contain_text(status)
            expect(row.get_by_role("link", name=task_id)).to_have_count(1)
            for name in ("Pause", "Resume"):
                expect(row.get_by_role("button", name=name)).to_have_count(1 if name == action else 0)
        # The dead letters: one Redrive; ticking the row first, the dry run counts 1 task
        page.get_by_role("link", name="Dead letters").click()
        names_on(page, buttons={"Sign out", "Redrive"})
        expect(page.get_by_role("link", name=dead)).to_have_count(1)
        page.get_by_role("checkbox", name=dead).check()
        page.get_by_role("button", name="Redrive").click()
        # The confirmation: its one button (the only one named like Redrive) confirms, the count said once
        names_on(page, buttons={"Sign out", "Redrive"})
        expect(page.get_by_role("button", name="Redrive")).to_have_accessible_name("Confirm redrive")
        expect(page.get_by_text(re.compile(r"\b1 task\b"))).to_have_count(1)
        assert bob.get(f"/v1/tasks/{dead}").json()["status"] == "failed"
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("status")).to_contain_text("Redriven 1 task")
    finally:
        bob.post(f"/v1/tasks/{repeating}/cancel")
        bob.post(f"/v1/tasks/{paused}/cancel")
