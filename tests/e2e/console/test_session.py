"""Signing in and out of the console, its session cookie, and CSRF refusal (contract section 9; issue 18's
acceptance), in a real Chromium against a real stack."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Response, expect

from tests.e2e.console.ui import NAV_LINKS, events, in_an_hour, screenshot, sign_out, signed_in, submit
from tqdev.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

#: Another site, as the browser sees it (its page is served by the test: ``page.route``).
FOREIGN = "http://prizes.test"
#: Where a page asked for without a session leads: the sign-in form, which returns there afterwards.
SIGN_IN = re.compile(r"/ui/(\?next=[^&]*)?$")


def session_cookies(page: Page) -> list[dict]:
    return [dict(c) for c in page.context.cookies() if c["name"] == "tq_session"]


def test_a_wrong_token_shows_an_error_and_opens_no_session(page: Page, shots: Path) -> None:
    # Given the sign-in form
    page.goto("/ui/")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    screenshot(page, "sign-in", shots)
    # When someone signs in with a token no principal has
    page.get_by_label("Token").fill("dev-mallory")
    with page.expect_response(lambda r: r.url.endswith("/ui/session") and r.request.method == "POST") as answer:
        page.get_by_role("button", name="Sign in").click()
    # Then the form comes back with an error (401), no session cookie is set, and the token is not echoed
    assert answer.value.status == 401
    expect(page.get_by_label("Token")).to_be_visible()
    expect(page.get_by_role("alert")).to_be_visible()
    assert session_cookies(page) == []
    assert "dev-mallory" not in page.content()
    # And the console's pages stay closed: they lead back to the sign-in form
    page.goto("/ui/tasks")
    expect(page.get_by_label("Token")).to_be_visible()
    expect(page).to_have_url(SIGN_IN)


def test_alice_signs_in_into_an_httponly_same_site_strict_session(page: Page, shots: Path) -> None:
    # When alice signs in with her token
    signed_in(page, "dev-alice")
    # Then every page's navigation is there, with her name, and a sign-out button
    for name in NAV_LINKS:
        expect(page.get_by_role("navigation").get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("banner").get_by_text("alice")).to_be_visible()
    screenshot(page, "overview", shots)
    # And the session is one cookie scripts cannot read, never sent cross-site, scoped to the console
    (cookie,) = session_cookies(page)
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")
    assert cookie["secure"] is False  # plain http on the local stack; https sets Secure (unit-tested)
    assert "tq_session" not in page.evaluate("document.cookie")
    # And the token itself is nowhere in the page or its address
    assert "dev-alice" not in page.content()
    assert "dev-alice" not in page.url
    # And the Tasks link leads to her tasks
    page.get_by_role("link", name="Tasks", exact=True).click()
    expect(page.get_by_role("heading", name="Tasks", level=1)).to_be_visible()


def test_sign_out_ends_the_session(page: Page) -> None:
    # Given alice signed in
    signed_in(page, "dev-alice")
    # When she signs out
    sign_out(page)
    # Then the cookie is gone and the console's pages lead back to the sign-in form
    assert session_cookies(page) == []
    page.goto("/ui/tasks")
    expect(page.get_by_label("Token")).to_be_visible()
    expect(page).to_have_url(SIGN_IN)


@pytest.fixture
def scheduled(api: Callable[[str], httpx.Client]) -> str:
    """Alice's repeating task, waiting an hour for its first run: a forged cancel must leave it so."""
    return submit(api("alice"), "echo", {}, schedule=in_an_hour())


def unchanged(api: httpx.Client, task_id: str) -> None:
    task = api.get(f"/v1/tasks/{task_id}").json()
    assert (task["status"], task.get("cancel_requested", False)) == ("scheduled", False), task
    happened = {kind for kind, _ in events(api, task_id)}
    assert not {"cancel_requested", "cancelled"} & happened, happened


def forged_post(page: Page, action: str, field: str, value: str) -> Response:
    """Show a page of another site (one the browser believes it is on) with a form that POSTs ``field=value`` to
    ``action``, click its button as its visitor would; the console's answer."""
    form = (
        f'<form method="post" action="{action}"><input type="hidden" name="{field}" value="{value}">'
        "<button>Claim your prize</button></form>"
    )
    page.route(
        f"{FOREIGN}/",
        lambda route: route.fulfill(content_type="text/html", body=f"<!doctype html><title>Prizes</title>{form}"),
    )
    page.goto(f"{FOREIGN}/")
    with page.expect_response(action) as answer:
        page.get_by_role("button", name="Claim your prize").click()
    return answer.value


def test_a_form_posted_from_another_site_is_refused_and_changes_nothing(
    page: Page, stack: Stack, api: Callable[[str], httpx.Client], scheduled: str
) -> None:
    # Given alice signed in, then visiting another site whose page holds a form aimed at her task
    signed_in(page, "dev-alice")
    # When she clicks its button
    answer = forged_post(page, f"{stack.url}/ui/tasks/{scheduled}/cancel", "csrf", "guess")
    # Then the console refuses it with a 403 page, and the task is untouched
    assert answer.status == 403
    assert answer.headers["content-type"].startswith("text/html")
    unchanged(api("alice"), scheduled)


def test_a_post_without_the_csrf_token_or_from_a_foreign_origin_is_refused_and_changes_nothing(
    page: Page, stack: Stack, api: Callable[[str], httpx.Client], scheduled: str
) -> None:
    # Given alice signed in, on her task's page (whose forms carry the CSRF token)
    signed_in(page, "dev-alice")
    page.goto(f"/ui/tasks/{scheduled}")
    expect(page.get_by_role("button", name="Cancel")).to_be_visible()
    token = page.locator('form input[name="csrf"]').first.get_attribute("value")
    assert token
    path = f"/ui/tasks/{scheduled}/cancel"
    # When her session cookie is sent without the token, with a wrong one, or with hers from another origin
    refused = [
        page.request.post(path, form={}, max_redirects=0),
        page.request.post(path, form={"csrf": "0" * len(token)}, max_redirects=0),
        page.request.post(path, form={"csrf": token[:-1]}, max_redirects=0),
        page.request.post(
            path,
            form={"csrf": token},
            headers={"Origin": FOREIGN, "Sec-Fetch-Site": "cross-site"},
            max_redirects=0,
        ),
    ]
    # Then each is a 403 page and nothing changed
    assert [(r.status, r.headers["content-type"].split(";")[0]) for r in refused] == [(403, "text/html")] * 4
    unchanged(api("alice"), scheduled)
    # While the same POST with her token from the console's own origin is done (303 back to the task)
    done = page.request.post(path, form={"csrf": token}, headers={"Origin": stack.url}, max_redirects=0)
    assert done.status == 303, done.text()
    assert api("alice").get(f"/v1/tasks/{scheduled}").json()["status"] == "cancelled"


def test_a_sign_in_posted_from_another_site_is_refused(page: Page, stack: Stack) -> None:
    # Given a page of another site that signs its visitor into the console as bob (login CSRF)
    # When the visitor clicks its button
    answer = forged_post(page, f"{stack.url}/ui/session", "token", "dev-bob")
    # Then the console refuses it and opens no session
    assert answer.status == 403
    assert session_cookies(page) == []
