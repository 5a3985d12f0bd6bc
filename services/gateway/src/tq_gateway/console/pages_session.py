"""Signing in and out, and the static assets: the console's resources that need no session."""

from __future__ import annotations

import re

import falcon

from tq_gateway.auth import BearerAuth, Unauthenticated
from tq_gateway.auth_failures import client_address
from tq_gateway.console.gate import Access
from tq_gateway.console.render import IMMUTABLE, Assets, Renderer
from tq_gateway.console.session import MAX_TOKEN_CHARS, Sessions

#: Where a sign-in may send the browser next: a console page of ours, never another host (``//evil``, ``/\\evil``).
SAFE_NEXT = re.compile(r"/ui(/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?")


def safe_next(value: str | None) -> str:
    """``value`` if it is one of our console pages, else the overview."""
    if value and SAFE_NEXT.fullmatch(value) and "//" not in value:
        return value
    return "/ui/"


def sign_in_page(
    renderer: Renderer, req: falcon.Request, resp: falcon.Response, *, error: str = "", status: int = 200
) -> None:
    """The sign-in form (``Token``, ``Sign in``), with ``error`` above it if the last try failed."""
    renderer.render(req, resp, "signin.html", status=status, error=error, next=safe_next(req.get_param("next")))


class SessionStart:
    """``POST /ui/session``: sign in with a token (an API key, a JWT, or a dev token on the local stack).

    Public (there is no session yet), but same-origin only (the gate's check): a page of another site cannot sign
    a visitor in as someone else. A wrong token answers the form again, 401, and sets no cookie.
    """

    access = Access.PUBLIC

    def __init__(self, renderer: Renderer, sessions: Sessions, bearer: BearerAuth, trusted_proxy_hops: int) -> None:
        self._renderer = renderer
        self._sessions = sessions
        self._bearer = bearer
        self._hops = trusted_proxy_hops

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        form = req.context.form
        token = (form.get("token") or "").strip()
        next_page = safe_next(form.get("next"))
        if not token or len(token) > MAX_TOKEN_CHARS:
            self._retry(req, resp, "Enter the token you were given (an API key, or a dev token locally).", next_page)
            return
        try:
            self._bearer.principal(token, client_address(req, self._hops))
        except Unauthenticated:
            self._retry(req, resp, "That token is not valid: check it and try again.", next_page)
            return
        self._sessions.start(req, resp, token)
        raise falcon.HTTPSeeOther(next_page)

    def _retry(self, req: falcon.Request, resp: falcon.Response, error: str, next_page: str) -> None:
        self._renderer.render(req, resp, "signin.html", status=401, error=error, next=next_page)


class SessionEnd:
    """``POST /ui/session/end``: sign out (the cookie is dropped) and back to the sign-in page. Without a session
    there is nothing to end: it only clears the cookie."""

    access = Access.OPTIONAL

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._sessions.end(req, resp)
        raise falcon.HTTPSeeOther("/ui/")


class StaticAsset:
    """``GET /ui/static/{name}``: a fingerprinted asset, cached by browsers and proxies for a year."""

    access = Access.PUBLIC

    def __init__(self, assets: Assets) -> None:
        self._assets = assets

    def on_get(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        asset = self._assets.get(name)
        if asset is None:
            raise falcon.HTTPNotFound(title="Not Found", description=f"no asset {name[:80]!r}")
        resp.data = asset.data
        resp.content_type = asset.content_type
        resp.cache_control = [IMMUTABLE]
