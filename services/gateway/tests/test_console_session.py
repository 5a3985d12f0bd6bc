"""The console's foundation over in-memory fakes: sign-in and sign-out, the session cookie, CSRF and same-origin
checks, the security headers, static assets and HTML error pages."""

from __future__ import annotations

import re
from typing import Any

import falcon
import pytest

from tq_gateway.console.gate import Access
from tq_gateway.console.session import COOKIE, Sessions
from tq_gateway.settings import GatewaySettings
from tq_gateway.testing import FORM, Browser, app_over_fakes, browser_over_fakes

pytestmark = pytest.mark.unit

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class Probe:
    """A signed-in page and action, to test the gate without depending on any real page."""

    access = Access.SIGNED_IN

    def __init__(self) -> None:
        self.posts: list[str] = []

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = "text/html"
        resp.text = f'<p>{req.context.principal.name}</p><input name="csrf" value="{req.context.csrf}">'

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.posts.append(req.context.principal.name)
        raise falcon.HTTPSeeOther("/ui/probe?done=updated")


def with_probe(**settings: Any) -> tuple[Browser, Probe]:
    app = app_over_fakes(GatewaySettings(**settings))
    probe = Probe()
    app.add_route("/ui/probe", probe)
    return Browser(falcon.testing.TestClient(app)), probe


def set_cookie(result: falcon.testing.Result) -> str:
    return "; ".join(v for k, v in result.headers.items() if k == "set-cookie") if result.headers else ""


def test_signed_out_the_overview_is_the_sign_in_form_with_the_security_headers() -> None:
    page = browser_over_fakes().get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert re.search(r'<label for="token">Token</label>\s*<input id="token" name="token" type="text"', page.text)
    assert ">Sign in</button>" in page.text
    assert "Sign out" not in page.text
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert page.headers["cache-control"] == "no-store"
    assert "<script>" not in page.text
    assert " style=" not in page.text


def test_signing_in_sets_an_httponly_strict_cookie_that_does_not_show_the_token() -> None:
    browser = browser_over_fakes()
    result = browser.post("/ui/session", {"token": "dev-alice"}, csrf=False)
    assert result.status_code == 303
    assert result.headers["location"] == "/ui/"
    cookie = result.cookies[COOKIE]
    assert cookie.http_only
    assert cookie.same_site == "Strict"
    assert cookie.path == "/ui"
    assert cookie.max_age == 8 * 3600
    assert not cookie.secure  # plain http: a Secure cookie would never come back
    assert "dev-alice" not in cookie.value
    assert '"' not in set_cookie(result).split(";")[0]
    page = browser.get("/ui/")
    assert ">alice</span>" in page.text
    for label in ("Overview", "Tasks", "Schedules", "Dead letters"):
        assert f">{label}</a>" in page.text
    assert ">Sign out</button>" in page.text
    assert "dev-alice" not in page.text


@pytest.mark.parametrize(
    ("hops", "headers", "secure"),
    [(0, {"X-Forwarded-Proto": "https"}, False), (1, {"X-Forwarded-Proto": "https"}, True), (1, {}, False)],
)
def test_the_cookie_is_secure_behind_a_trusted_tls_proxy(hops: int, headers: dict[str, str], secure: bool) -> None:
    browser = browser_over_fakes(GatewaySettings(trusted_proxy_hops=hops))
    result = browser.post("/ui/session", {"token": "dev-alice"}, csrf=False, headers=headers)
    assert result.cookies[COOKIE].secure is secure


def test_over_https_the_cookie_is_secure() -> None:
    client = browser_over_fakes().client
    result = client.simulate_post(
        "/ui/session", body="token=dev-alice", headers={"Content-Type": FORM}, protocol="https"
    )
    assert result.cookies[COOKIE].secure


@pytest.mark.parametrize("token", ["wrong", "", "x" * 5000])
def test_a_wrong_token_shows_the_form_again_401_without_a_cookie(token: str) -> None:
    browser = browser_over_fakes()
    result = browser.post("/ui/session", {"token": token}, csrf=False)
    assert result.status_code == 401
    assert 'role="alert"' in result.text
    assert ">Sign in</button>" in result.text
    assert COOKIE not in result.cookies
    assert token not in result.text or not token  # never echoed back


@pytest.mark.parametrize(
    "headers", [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}]
)
def test_signing_in_from_another_site_is_refused(headers: dict[str, str]) -> None:
    result = browser_over_fakes().post("/ui/session", {"token": "dev-alice"}, csrf=False, headers=headers)
    assert result.status_code == 403
    assert result.headers["content-type"] == "text/html; charset=utf-8"
    assert COOKIE not in result.cookies


@pytest.mark.parametrize(
    ("next_page", "location"),
    [
        ("/ui/tasks?status=running", "/ui/tasks?status=running"),
        ("//evil.example/ui", "/ui/"),
        ("/ui//evil.example", "/ui/"),
        ("https://evil.example/ui/", "/ui/"),
        ("/ui/\\evil", "/ui/"),
        ("/v1/tasks", "/ui/"),
    ],
)
def test_sign_in_goes_back_only_to_a_console_page(next_page: str, location: str) -> None:
    result = browser_over_fakes().post("/ui/session", {"token": "dev-alice", "next": next_page}, csrf=False)
    assert result.headers["location"] == location


def test_without_a_session_a_page_sends_to_sign_in_and_a_post_is_refused() -> None:
    browser, probe = with_probe()
    page = browser.get("/ui/probe", x="1")
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/?next=%2Fui%2Fprobe%3Fx%3D1"
    form = browser.get("/ui/", next="/ui/probe?x=1")
    assert 'name="next" value="/ui/probe?x=1"' in form.text
    refused = browser.post("/ui/probe", csrf=False)
    assert refused.status_code == 403
    assert "sign in" in refused.text.lower()
    assert probe.posts == []


def test_a_post_needs_the_sessions_csrf_token_and_our_origin() -> None:
    browser, probe = with_probe()
    browser.sign_in()
    browser.get("/ui/probe")
    good = browser.csrf
    assert browser.post("/ui/probe", csrf=False).status_code == 403
    assert browser.post("/ui/probe", {"csrf": "0" * 64}, csrf=False).status_code == 403
    assert browser.post("/ui/probe", headers={"Origin": "http://evil.example"}).status_code == 403
    assert browser.post("/ui/probe", headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
    assert probe.posts == []
    # Another session's token is not this one's.
    other, _ = with_probe()
    other.client = browser.client
    other.sign_in("dev-bob")
    assert other.csrf != good
    assert browser.post("/ui/probe", {"csrf": other.csrf}, csrf=False).status_code == 403
    done = browser.post("/ui/probe")
    assert done.status_code == 303
    assert probe.posts == ["alice"]


def test_a_refused_post_is_an_html_page_with_the_reason() -> None:
    browser, _ = with_probe()
    browser.sign_in()
    refused = browser.post("/ui/probe", csrf=False)
    assert refused.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>403 Forbidden</h1>" in refused.text
    assert "CSRF" in refused.text
    assert refused.headers["content-security-policy"] == CSP


def test_signing_out_drops_the_cookie_and_the_session() -> None:
    browser, _ = with_probe()
    browser.sign_in()
    result = browser.post("/ui/session/end")
    assert result.status_code == 303
    assert result.headers["location"] == "/ui/"
    assert result.cookies[COOKIE].value == ""
    assert browser.get("/ui/probe").status_code == 303
    assert browser.get("/ui/").text.count(">Sign in</button>") == 1


def test_a_forged_or_damaged_cookie_is_no_session_and_is_cleared() -> None:
    browser, _ = with_probe()
    browser.sign_in()
    browser.cookies[COOKIE] = browser.cookies[COOKIE][:-4] + "AAAA"
    result = browser.get("/ui/probe")
    assert result.status_code == 303
    assert result.cookies[COOKIE].value == ""


def test_a_session_ends_after_its_lifetime() -> None:
    now = [1_000_000.0]
    sessions = Sessions("s" * 32, 60, now=lambda: now[0])
    other = Sessions("t" * 32, 60, now=lambda: now[0])
    request = falcon.testing.create_req(path="/ui/")
    response = falcon.Response()
    sessions.start(request, response, "dev-alice")
    value = response._cookies[COOKIE].value  # type: ignore[index]
    signed = falcon.testing.create_req(path="/ui/", headers={"Cookie": f"{COOKIE}={value}"})
    assert sessions.read(signed) is not None
    assert other.read(signed) is None  # another key
    now[0] += 61
    assert sessions.read(signed) is None


def test_static_assets_are_fingerprinted_and_cached_for_a_year() -> None:
    browser = browser_over_fakes()
    page = browser.get("/ui/")
    css = re.search(r'href="(/ui/static/console\.[0-9a-f]{12}\.css)"', page.text)
    js = re.search(r'src="(/ui/static/console\.[0-9a-f]{12}\.js)"', page.text)
    assert css
    assert js
    style = browser.get(css.group(1))
    assert style.status_code == 200
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    assert style.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "prefers-color-scheme: dark" in style.text
    script = browser.get(js.group(1))
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert "eval(" not in script.text
    missing = browser.get("/ui/static/console.000000000000.css")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "text/html; charset=utf-8"
    assert browser.get("/ui/static/console.css").status_code == 404  # only the fingerprinted names


def test_errors_under_ui_are_html_pages_with_the_navigation_when_signed_in() -> None:
    browser = browser_over_fakes()
    anonymous = browser.get("/ui/no/such/page")
    assert anonymous.status_code == 404
    assert "<h1>404 Not Found</h1>" in anonymous.text
    assert "Sign out" not in anonymous.text
    browser.sign_in()
    signed = browser.get("/ui/no/such/page")
    assert signed.status_code == 404
    assert ">Sign out</button>" in signed.text
    assert "Traceback" not in signed.text
    assert browser.client.simulate_get("/v1/no-such").headers["content-type"] == "application/problem+json"


def test_the_api_still_needs_its_bearer_header_and_ignores_the_cookie() -> None:
    browser = browser_over_fakes()
    browser.sign_in()
    api = browser.client.simulate_get("/v1/tasks", cookies=browser.cookies)
    assert api.status_code == 401


def test_console_requests_count_against_the_principals_rate_limit() -> None:
    browser = browser_over_fakes(GatewaySettings(rate_limit_rps=0.001, rate_limit_burst=3))
    browser.sign_in()  # the overview after sign-in: one request of alice's
    assert browser.get("/ui/").status_code == 200
    assert browser.get("/ui/").status_code == 200
    limited = browser.get("/ui/")
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>429 Too Many Requests</h1>" in limited.text
    assert int(limited.headers["retry-after"]) >= 1


def test_repeated_wrong_sign_ins_from_one_address_are_refused_before_any_lookup() -> None:
    browser = browser_over_fakes(GatewaySettings(auth_failure_rps=0.001, auth_failure_burst=2))
    assert [browser.post("/ui/session", {"token": "wrong"}, csrf=False).status_code for _ in range(3)] == [
        401,
        401,
        429,
    ]
    refused = browser.post("/ui/session", {"token": "still-wrong"}, csrf=False)
    assert refused.status_code == 429
    assert "<h1>429 Too Many Requests</h1>" in refused.text
    assert browser.post("/ui/session", {"token": "dev-alice"}, csrf=False).status_code == 303  # known without lookup
