"""The console's middleware: who is signed in, CSRF and same-origin checks on every POST, the security headers of
every ``/ui`` response, and errors as HTML pages (the API's problem+json, rendered)."""

from __future__ import annotations

import enum
import json
import logging
from typing import Any
from urllib.parse import parse_qs, quote

import falcon

from tq_gateway.auth import BearerAuth, Unauthenticated, is_console
from tq_gateway.auth_failures import client_address
from tq_gateway.console.render import Renderer
from tq_gateway.console.session import COOKIE, CSRF_FIELD, Sessions, same_origin
from tq_gateway.problems import PROBLEM_JSON

log = logging.getLogger(__name__)

#: Form fields one POST may carry (a dead-letter redrive of selected tasks sends one per task).
MAX_FORM_FIELDS = 1100

#: Headers of every ``/ui`` response: scripts and styles only from our own files, no framing, no sniffing.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class Access(enum.Enum):
    """Who may reach a console resource (its class attribute ``access``; ``SIGNED_IN`` when it has none)."""

    PUBLIC = "public"  #: anyone, no session read (static assets, the sign-in POST)
    OPTIONAL = "optional"  #: anyone; ``req.context.principal`` is the signed-in user or ``None``
    SIGNED_IN = "signed_in"  #: a session only: without one, a GET is sent to sign in and a POST refused (403)
    #: a session only, for a script (an EventSource): without one, 401 (a redirect to the sign-in page would be
    #: followed and retried, never shown)
    SCRIPTED = "scripted"


class Form:
    """A POSTed ``application/x-www-form-urlencoded`` body."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self._fields = fields

    @classmethod
    def parse(cls, req: falcon.Request) -> Form:
        """The request's form (empty for any other content type); 400 for one that is not valid."""
        if (req.content_type or "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            return cls({})
        try:
            text = getattr(req.context, "body", b"").decode("utf-8")
            return cls(parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
        except (UnicodeDecodeError, ValueError):
            raise falcon.HTTPBadRequest(title="Bad Request", description="the form is not valid") from None

    def get(self, name: str) -> str | None:
        """The field's first value, if it was sent."""
        values = self._fields.get(name)
        return values[0] if values else None

    def getall(self, name: str) -> list[str]:
        """Every value of the field, in order."""
        return list(self._fields.get(name, []))


def scripted(req: falcon.Request) -> bool:
    """Whether a request comes from a page's script (``fetch``, ``EventSource``), not a navigation: the browser
    says so in ``Sec-Fetch-Mode`` (a browser that does not send it is taken for a navigation)."""
    mode = req.get_header("Sec-Fetch-Mode")
    return mode is not None and mode.lower() != "navigate"


def sign_in_url(req: falcon.Request) -> str:
    """Where a GET without a session is sent: the sign-in page, coming back to this page after."""
    here = req.relative_uri
    return "/ui/" if here in ("/ui", "/ui/") else f"/ui/?next={quote(here, safe='')}"


class ConsoleGate:
    """Resolves the session cookie to ``req.context.principal`` through the API's ``BearerAuth`` (same
    authenticators, caches and failure budget), checks every POST, and finishes every ``/ui`` response.

    Placed after ``BearerAuth`` (which leaves ``/ui`` to it) and before the rate limit (console requests count
    against the principal's limit like API requests).
    """

    def __init__(self, sessions: Sessions, bearer: BearerAuth, renderer: Renderer, trusted_proxy_hops: int = 0) -> None:
        self._sessions = sessions
        self._bearer = bearer
        self._renderer = renderer
        self._hops = trusted_proxy_hops

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if resource is None or not is_console(req.path):
            return
        req.context.principal = None
        if req.method == "POST":
            req.context.form = Form.parse(req)
            if not same_origin(req):
                raise falcon.HTTPForbidden(
                    title="Forbidden", description="This form was not sent from one of this console's pages."
                )
        access = getattr(resource, "access", Access.SIGNED_IN)
        if access is Access.PUBLIC:
            return
        session = self._sessions.read(req)
        if session is not None:
            try:
                req.context.principal = self._bearer.principal(session.token, client_address(req, self._hops))
            except Unauthenticated:  # the key was revoked (or the JWT expired): the session ends with it
                session = None
        if session is None:
            if req.get_cookie_values(COOKIE):
                self._sessions.end(req, resp)
            if access is Access.OPTIONAL:
                return
            if access is Access.SCRIPTED or scripted(req):  # the script reloads its page, which goes to sign in
                raise falcon.HTTPUnauthorized(
                    title="Unauthorized", description="You are not signed in (or your session has ended)."
                )
            if req.method in ("GET", "HEAD"):
                raise falcon.HTTPSeeOther(sign_in_url(req))
            raise falcon.HTTPForbidden(
                title="Forbidden", description="You are not signed in (or your session has ended): sign in again."
            )
        req.context.session = session
        req.context.csrf = self._sessions.csrf(session)
        if req.method == "POST" and not self._sessions.csrf_ok(session, req.context.form.get(CSRF_FIELD)):
            raise falcon.HTTPForbidden(
                title="Forbidden", description="This form's CSRF token is missing or wrong: reload the page and retry."
            )

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource: Any, req_succeeded: bool) -> None:
        if not is_console(req.path):
            return
        if resp.content_type == PROBLEM_JSON:
            self._error_page(req, resp)
        resp.set_headers(SECURITY_HEADERS)
        if resp.get_header("Cache-Control") is None:
            resp.set_header("Cache-Control", "no-store")

    def _quiet_principal(self, req: falcon.Request) -> Any:
        """The signed-in user, or ``None``, for a page that is an error anyway (nothing raised from here)."""
        session = self._sessions.read(req)
        if session is None:
            return None
        try:
            principal = self._bearer.principal(session.token, client_address(req, self._hops))
            req.context.csrf = self._sessions.csrf(session)
            return principal
        except Exception:  # noqa: BLE001 - an error page shows without the navigation rather than fail
            return None

    def _error_page(self, req: falcon.Request, resp: falcon.Response) -> None:
        """The problem document the error handlers wrote (``tq_gateway.errors``), as an HTML page, same status."""
        try:
            problem = json.loads(resp.text or "{}")
        except ValueError:
            problem = {}
        status = falcon.http_status_to_code(resp.status)
        title = str(problem.get("title") or falcon.code_to_http_status(status))
        detail = str(problem.get("detail") or "")
        resp.delete_header("WWW-Authenticate")
        if not hasattr(req.context, "principal"):  # no route (Falcon skips process_resource): who is it, for the nav?
            req.context.principal = self._quiet_principal(req)
        self._renderer.render(
            req,
            resp,
            "error.html",
            status=status,
            back=_back(req),
            errors=[_reason(item) for item in problem.get("errors") or [] if isinstance(item, dict)],
            title=title,
            detail="" if detail in (title, f"{status} {title}") else detail,
            status_code=status,
        )


def _back(req: falcon.Request) -> str:
    """Where an error page's link leads: the page a refused action was on (its form POSTs to a path below it),
    else the tasks (signed in) or the sign-in page."""
    parent = req.path.rsplit("/", 1)[0]
    if req.method == "POST" and is_console(parent) and getattr(req.context, "principal", None) is not None:
        return parent
    return "/ui/tasks" if getattr(req.context, "principal", None) is not None else "/ui/"


def _reason(error: dict[str, Any]) -> str:
    """One validation error of a problem document (``{"loc": [...], "msg": ...}``) as a line of text."""
    where = ".".join(str(part) for part in error.get("loc") or [])
    return f"{where}: {error.get('msg', '')}" if where else str(error.get("msg", ""))
