"""The console's pages in a real Chromium against a real stack (contract section 9; issue 18's acceptance): what
each user sees (only their groups' tasks, not even by URL), a task with its runs, log and events, the actions
(cancel a running task, pause and resume a schedule, redrive dead letters after a dry run), live updates without a
reload, a phone's width and dark mode. Each page's screenshot is taken here (``ui.screenshot``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import wait_for_status
from tests.e2e.console.ui import (
    PHONE,
    events,
    eventually,
    in_an_hour,
    log_control,
    row_of,
    screenshot,
    signed_in,
    submit,
    task_link,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

#: Markup that would run if a page inserted it as HTML (single quotes: a JSON rendering leaves them as they are).
HOSTILE = "<script>window.__pwned = 1</script><img src='x' onerror='window.__pwned = 2'>"


def mark_document(page: Page) -> None:
    """Mark the current document: :func:`same_document` tells whether the page was reloaded since."""
    page.evaluate("window.__tq_marked = true")


def same_document(page: Page) -> bool:
    return page.evaluate("window.__tq_marked === true") is True


def test_bob_never_sees_alices_tasks_not_even_by_url(
    new_page: Callable[..., Page], api: Callable[[str], httpx.Client], shots: Path
) -> None:
    # Given a task of alice's (team-a) and one of bob's (team-b), both run
    alice, bob = api("alice"), api("bob")
    hers = submit(alice, "console.say", {"lines": ["alice's secret"]})
    his = submit(bob, "echo", {"whose": "bob"}, group="team-b")
    wait_for_status(alice, hers, {"succeeded"}, timeout_s=30)
    wait_for_status(bob, his, {"succeeded"}, timeout_s=30)
    run_id = alice.get(f"/v1/tasks/{hers}/runs").json()["items"][0]["run_id"]
    # When bob signs in and opens his tasks
    page = signed_in(new_page(), "dev-bob")
    page.get_by_role("link", name="Tasks", exact=True).click()
    # Then his task is listed, alice's is not, not even when he filters by her group
    expect(task_link(page, his)).to_be_visible()
    expect(task_link(page, hers)).to_have_count(0)
    page.goto("/ui/tasks?group=team-a")
    expect(task_link(page, hers)).to_have_count(0)
    # And her task's page, its log and its live stream answer 404 as in the API, revealing nothing
    answer = page.goto(f"/ui/tasks/{hers}")
    assert answer is not None
    assert answer.status == 404
    assert "alice's secret" not in page.content()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()  # an HTML page of the console's
    for path in (f"/ui/tasks/{hers}/runs/{run_id}/log", f"/ui/tasks/{hers}/live"):
        answer = page.request.get(path, max_redirects=0, timeout=10_000)
        assert answer.status == 404, (path, answer.status)
        assert "alice's secret" not in answer.text()
    # And an action on it (with bob's own CSRF token) is a 404 that changes nothing
    page.goto("/ui/tasks")
    token = page.locator('form input[name="csrf"]').first.get_attribute("value")
    answer = page.request.post(f"/ui/tasks/{hers}/redrive", form={"csrf": token or ""}, max_redirects=0)
    assert answer.status == 404
    assert [t for t, _ in events(alice, hers)][-1] == "succeeded"


def test_the_tasks_table_lists_newest_first_with_links_type_and_status(
    page: Page, api: Callable[[str], httpx.Client], shots: Path
) -> None:
    # Given three tasks of alice's, submitted one after another
    alice = api("alice")
    ids = [submit(alice, "echo", {"n": n}) for n in range(3)]
    for task_id in ids:
        wait_for_status(alice, task_id, {"succeeded"}, timeout_s=30)
    # When she opens her tasks
    signed_in(page, "dev-alice").get_by_role("link", name="Tasks", exact=True).click()
    # Then each is a row with a link to its page, its type and its status, the newest first
    for task_id in ids:
        expect(row_of(page, task_id)).to_contain_text("echo")
        expect(row_of(page, task_id)).to_contain_text("succeeded")
    links = page.get_by_role("link", name=re.compile("|".join(map(re.escape, ids)))).all_inner_texts()
    assert [text.strip() for text in links] == ids[::-1]
    screenshot(page, "tasks", shots)
    # And a filter narrows it (by status: none of these failed)
    page.goto("/ui/tasks?status=failed")
    expect(task_link(page, ids[0])).to_have_count(0)
    # And the link leads to the task
    page.goto("/ui/tasks")
    task_link(page, ids[0]).click()
    expect(page).to_have_url(re.compile(rf"/ui/tasks/{re.escape(ids[0])}$"))


def test_a_task_page_shows_status_payload_runs_with_their_log_and_events_with_actors_all_as_text(
    page: Page, api: Callable[[str], httpx.Client], shots: Path
) -> None:
    # Given a task whose payload and run log hold markup (a script and an image with an onerror)
    alice = api("alice")
    task_id = submit(alice, "console.say", {"lines": ["first line", f"hostile {HOSTILE}"]})
    wait_for_status(alice, task_id, {"succeeded"}, timeout_s=30)
    # When alice opens its page
    signed_in(page, "dev-alice").goto(f"/ui/tasks/{task_id}")
    # Then it shows its id, status, payload and result, the markup as text that never ran
    expect(page.get_by_text(task_id).first).to_be_visible()
    expect(page.get_by_text("succeeded", exact=True).first).to_be_visible()
    expect(page.get_by_text(HOSTILE).first).to_be_visible()
    # And its events with their actors: alice submitted it, an executor ran it
    expect(row_of(page, "submitted").first).to_contain_text("alice")
    expect(row_of(page, "claimed").first).to_contain_text("executor:")
    screenshot(page, "task", shots)
    # And its run, whose Log control shows the run's log text, markup as text
    runs = row_of(page, "succeeded").filter(has=log_control(page))
    expect(runs).to_have_count(1)
    expect(page.get_by_text("said: first line")).to_be_hidden()
    log_control(runs).click()
    expect(page.get_by_text("said: first line")).to_be_visible()
    expect(page.get_by_text(f"said: hostile {HOSTILE}")).to_be_visible()
    assert page.evaluate("window.__pwned === undefined")
    screenshot(page, "task-log", shots)


def test_cancel_a_running_task_and_its_events_show_alice(
    page: Page, api: Callable[[str], httpx.Client], shots: Path
) -> None:
    # Given a long sleep that is running
    alice = api("alice")
    task_id = submit(alice, "sleep", {"seconds": 120})
    wait_for_status(alice, task_id, {"running"}, timeout_s=30)
    # When alice opens its page and clicks Cancel
    signed_in(page, "dev-alice").goto(f"/ui/tasks/{task_id}")
    expect(page.get_by_role("button", name="Redrive")).to_have_count(0)  # only where the API allows it
    page.get_by_role("button", name="Cancel").click()
    # Then she is back on the task's page, and the attempt stops (a heartbeat later)
    expect(page).to_have_url(re.compile(rf"/ui/tasks/{re.escape(task_id)}(\?.*)?$"))
    wait_for_status(alice, task_id, {"cancelled"}, timeout_s=30)
    page.reload()
    expect(page.get_by_text("cancelled", exact=True).first).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    # And the task's events say alice asked for it, on the page as in the API
    expect(row_of(page, "cancel_requested").first).to_contain_text("alice")
    assert ("cancel_requested", "alice") in events(alice, task_id)


def test_a_running_tasks_page_follows_it_to_its_end_without_a_reload(
    page: Page, api: Callable[[str], httpx.Client]
) -> None:
    # Given alice on the page of a sleep that has not finished
    alice = api("alice")
    task_id = submit(alice, "sleep", {"seconds": 6})
    signed_in(page, "dev-alice").goto(f"/ui/tasks/{task_id}")
    expect(page.get_by_text("succeeded", exact=True)).to_have_count(0)
    mark_document(page)
    # When it runs and ends, then the same document shows it (live, no reload and no click)
    expect(page.get_by_text("running", exact=True).first).to_be_visible()
    expect(page.get_by_text("succeeded", exact=True).first).to_be_visible(timeout=40_000)
    assert same_document(page)
    # And the page of the ended task follows nothing any more (no live URL: its stream is not opened again)
    expect(page.locator("main[data-live]")).to_have_count(0)


def test_a_log_opened_after_the_session_ended_goes_to_sign_in_not_the_sign_in_html_as_log(
    page: Page, api: Callable[[str], httpx.Client]
) -> None:
    # Given alice on the page of her ended task, and her session gone (the cookie cleared, as at its end)
    alice = api("alice")
    task_id = submit(alice, "console.say", {"lines": ["a line"]})
    wait_for_status(alice, task_id, {"succeeded"}, timeout_s=30)
    signed_in(page, "dev-alice").goto(f"/ui/tasks/{task_id}")
    page.context.clear_cookies()
    # When she opens the run's log, then the page goes to sign in (coming back here after), no HTML as the log
    log_control(page).first.click()
    expect(page.get_by_label("Token")).to_be_visible()
    assert f"next=%2Fui%2Ftasks%2F{task_id}" in page.url


def test_the_tasks_table_shows_a_new_task_without_a_reload(page: Page, api: Callable[[str], httpx.Client]) -> None:
    # Given alice on her tasks table
    signed_in(page, "dev-alice").goto("/ui/tasks")
    expect(page.get_by_role("table")).to_be_visible()
    mark_document(page)
    # When a task is submitted (through the API)
    task_id = submit(api("alice"), "echo", {"live": True})
    # Then it appears in the same document
    expect(task_link(page, task_id)).to_be_visible(timeout=40_000)
    assert same_document(page)


def test_pause_and_resume_a_schedule_from_the_schedules_page(
    page: Page, api: Callable[[str], httpx.Client], shots: Path
) -> None:
    # Given a repeating task of alice's, an hour before its first run
    alice = api("alice")
    task_id = submit(alice, "echo", {"every": "hour"}, schedule=in_an_hour())
    # When she pauses it from the schedules page
    signed_in(page, "dev-alice").get_by_role("link", name="Schedules", exact=True).click()
    expect(row_of(page, task_id)).to_contain_text("scheduled")
    row_of(page, task_id).get_by_role("button", name="Pause").click()
    # Then it is paused (on the page and in the API) and can be resumed
    expect(row_of(page, task_id)).to_contain_text("paused")
    assert alice.get(f"/v1/tasks/{task_id}").json()["status"] == "paused"
    screenshot(page, "schedules", shots)
    # When she resumes it
    row_of(page, task_id).get_by_role("button", name="Resume").click()
    # Then it is scheduled again, and both actions are in its events as hers
    expect(row_of(page, task_id)).to_contain_text("scheduled")
    expect(row_of(page, task_id).get_by_role("button", name="Pause")).to_be_visible()
    assert alice.get(f"/v1/tasks/{task_id}").json()["status"] == "scheduled"
    assert {("paused", "alice"), ("resumed", "alice")} <= set(events(alice, task_id))


def test_pause_and_resume_from_the_task_page(page: Page, api: Callable[[str], httpx.Client]) -> None:
    # Given alice on the page of her repeating task
    alice = api("alice")
    task_id = submit(alice, "echo", {"every": "hour"}, schedule=in_an_hour())
    signed_in(page, "dev-alice").goto(f"/ui/tasks/{task_id}")
    expect(page.get_by_role("button", name="Resume")).to_have_count(0)
    # When she pauses it, then Resume replaces Pause; when she resumes it, Pause is back
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    assert [e for e in events(alice, task_id) if e[0] in {"paused", "resumed"}] == [
        ("paused", "alice"),
        ("resumed", "alice"),
    ]


def test_redrive_dead_letters_after_a_dry_run_that_counts_them(
    page: Page, api: Callable[[str], httpx.Client], shots: Path
) -> None:
    # Given two of alice's tasks dead-lettered (no retries), and one of bob's
    alice, bob = api("alice"), api("bob")
    no_retry = {"retry": {"max_retries": 0}}
    hers = [submit(alice, "flaky", {"fail_times": 1}, **no_retry) for _ in range(2)]
    his = submit(bob, "flaky", {"fail_times": 1}, group="team-b", **no_retry)
    for task_id in hers:
        wait_for_status(alice, task_id, {"failed"}, timeout_s=30)
    wait_for_status(bob, his, {"failed"}, timeout_s=30)
    # When alice opens the dead letters: hers are listed, bob's is not
    signed_in(page, "dev-alice").get_by_role("link", name="Dead letters", exact=True).click()
    for task_id in hers:
        expect(task_link(page, task_id)).to_be_visible()
    expect(task_link(page, his)).to_have_count(0)
    screenshot(page, "dlq", shots)
    # And she asks to redrive them: a dry run first says how many, and nothing has moved yet
    page.get_by_role("button", name="Redrive", exact=True).click()  # the one Redrive of the listed tasks
    expect(page.get_by_text(re.compile(r"\b2 tasks\b")).first).to_be_visible()
    screenshot(page, "dlq-redrive", shots)
    assert {alice.get(f"/v1/tasks/{t}").json()["status"] for t in hers} == {"failed"}
    assert all("redriven" not in dict(events(alice, t)) for t in hers)
    # When she confirms
    page.get_by_role("button", name=re.compile(r"^(Confirm|Redrive 2 tasks)")).click()
    # Then both are redriven by her (each runs again: flaky fails its first attempt of a run, so fails again)
    eventually(lambda: all(("redriven", "alice") in events(alice, t) for t in hers))
    assert "redriven" not in dict(events(bob, his))


@pytest.mark.parametrize("where", ["/ui/", "/ui/tasks", "task", "/ui/schedules", "/ui/dlq"])
def test_each_page_fits_a_phones_width(
    phone_page: Page, api: Callable[[str], httpx.Client], shots: Path, where: str
) -> None:
    # Given alice on a phone (390 px wide) with a task whose payload is long
    page = signed_in(phone_page, "dev-alice")
    if where == "task":
        where = f"/ui/tasks/{submit(api('alice'), 'echo', {'long': 'x' * 400})}"
    # When she opens the page
    answer = page.goto(where)
    assert answer is not None
    assert answer.status == 200
    # Then it is laid out at the phone's width, and nothing makes the page itself scroll sideways (wide tables
    # scroll inside their own box)
    width, page_width = page.evaluate("[window.innerWidth, document.documentElement.scrollWidth]")
    assert width == PHONE["width"], "the page sets no mobile viewport (<meta name=viewport>)"
    assert page_width <= width
    expect(page.get_by_role("button", name="Sign out")).to_be_in_viewport()
    if where == "/ui/tasks":
        screenshot(page, "tasks-phone", shots)


def luminance(css_color: str) -> float:
    """Relative luminance (WCAG) of ``rgb(r, g, b)`` / ``rgba(r, g, b, a)``."""
    r, g, b = (int(c) / 255 for c in re.findall(r"[\d.]+", css_color)[:3])

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


COLOURS = """() => {
  const opaque = (el) => { const c = getComputedStyle(el).backgroundColor;
                           return c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent' ? c : null; };
  const canvas = getComputedStyle(document.documentElement).colorScheme.includes('dark')
                 && matchMedia('(prefers-color-scheme: dark)').matches ? 'rgb(18, 18, 18)' : 'rgb(255, 255, 255)';
  const main = document.querySelector('main') || document.body;
  return {background: opaque(main) || opaque(document.body) || opaque(document.documentElement) || canvas,
          text: getComputedStyle(main).color,
          link: getComputedStyle(document.querySelector('main a') || main).color};
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_pages_are_readable_in_light_and_dark_mode(
    new_page: Callable[..., Page], api: Callable[[str], httpx.Client], shots: Path, scheme: str
) -> None:
    # Given a browser that prefers the scheme, and a task to show
    submit(api("alice"), "echo", {"scheme": scheme})
    page = signed_in(new_page(color_scheme=scheme), "dev-alice")
    # When alice opens her tasks
    page.goto("/ui/tasks")
    expect(page.get_by_role("table")).to_be_visible()
    colours = page.evaluate(COLOURS)
    background = luminance(colours["background"])
    # Then the page follows the scheme (a dark background in dark mode, a light one otherwise)
    assert (background < 0.2) if scheme == "dark" else (background > 0.6), colours
    # And its text and links contrast with it as WCAG AA asks of body text (4.5:1)
    for part in ("text", "link"):
        lighter, darker = sorted((background, luminance(colours[part])), reverse=True)
        assert (lighter + 0.05) / (darker + 0.05) >= 4.5, (part, colours)
    if scheme == "dark":
        screenshot(page, "tasks-dark", shots)
