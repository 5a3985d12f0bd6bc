"""The console's session cookie and its CSRF tokens, and the same-origin check of every form POST.

The cookie (``tq_session``) is a Fernet token of ``{"token", "sid"}``: the bearer token the user signed in with
(encrypted, never readable by the browser's scripts or anyone without the key) and a random session id. Every
request resolves that token through the API's own ``BearerAuth.principal``, so the console has no authorization
path of its own. A form's ``csrf`` field is HMAC(key, sid): a page of another origin can neither read it nor
make it. Keys for both are derived from ``TQ_CONSOLE_SECRET``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import falcon
from cryptography.fernet import Fernet, InvalidToken

from tq_gateway.settings import GatewaySettings

#: The session cookie's name; it is sent only to ``/ui`` paths.
COOKIE = "tq_session"
COOKIE_PATH = "/ui"
#: The hidden form field every console POST carries.
CSRF_FIELD = "csrf"
#: Longest token a sign-in accepts (a JWT with many groups stays well under it; a cookie holds about 4 KiB).
MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the bearer token it signed in with and its session id."""

    token: str
    sid: str


def _subkey(secret: bytes, purpose: bytes) -> bytes:
    return hmac.new(secret, purpose, hashlib.sha256).digest()


class Sessions:
    """Makes and reads session cookies and CSRF tokens under one key; sessions last ``lifetime_s``."""

    def __init__(
        self,
        secret: str,
        lifetime_s: float,
        *,
        trusted_proxy_hops: int = 0,
        now: Callable[[], float] = time.time,
    ) -> None:
        key = secret.encode()
        self._fernet = Fernet(base64.urlsafe_b64encode(_subkey(key, b"tq-console-session")))
        self._csrf_key = _subkey(key, b"tq-console-csrf")
        self.lifetime_s = lifetime_s
        self._hops = trusted_proxy_hops
        self._now = now

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Sessions:
        """Keyed by ``TQ_CONSOLE_SECRET`` (unset: a random key of this process, as in tests and single processes;
        the gunicorn master sets one for all its workers)."""
        secret = settings.console_secret.get_secret_value() if settings.console_secret else secrets.token_urlsafe(48)
        return cls(secret, settings.console_session_s, trusted_proxy_hops=settings.trusted_proxy_hops)

    def start(self, req: falcon.Request, resp: falcon.Response, token: str) -> Session:
        """A new session for ``token``, set as the cookie."""
        session = Session(token, secrets.token_urlsafe(18))
        value = json.dumps({"token": session.token, "sid": session.sid}).encode()
        # Without base64's padding: a cookie value with ``=`` in it would be sent quoted.
        cookie = self._fernet.encrypt_at_time(value, int(self._now())).decode().rstrip("=")
        resp.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self.lifetime_s),
            path=COOKIE_PATH,
            secure=self.is_https(req),
            http_only=True,
            same_site="Strict",
        )
        return session

    def read(self, req: falcon.Request) -> Session | None:
        """The request's session: ``None`` without a cookie, or for one that is forged, damaged or too old."""
        values = req.get_cookie_values(COOKIE) or []
        for value in values:
            try:
                token = (value + "=" * (-len(value) % 4)).encode()
                data = json.loads(self._fernet.decrypt_at_time(token, int(self.lifetime_s), int(self._now())))
                return Session(str(data["token"]), str(data["sid"]))
            except (InvalidToken, ValueError, KeyError, TypeError):
                continue
        return None

    def end(self, req: falcon.Request, resp: falcon.Response) -> None:
        """Tell the browser to drop the cookie."""
        resp.unset_cookie(COOKIE, path=COOKIE_PATH, same_site="Strict")

    def csrf(self, session: Session) -> str:
        """The CSRF token of the session's forms."""
        return hmac.new(self._csrf_key, session.sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, sent: str | None) -> bool:
        """Whether ``sent`` is the session's CSRF token (compared in constant time)."""
        return sent is not None and hmac.compare_digest(self.csrf(session), sent)

    def is_https(self, req: falcon.Request) -> bool:
        """Whether the browser reached us over HTTPS: directly, or (behind ``trusted_proxy_hops`` proxies, which
        terminate TLS) as the proxy's ``X-Forwarded-Proto`` says."""
        if req.scheme == "https":
            return True
        if not self._hops:
            return False
        forwarded = [part.strip().lower() for part in (req.get_header("X-Forwarded-Proto") or "").split(",")]
        return forwarded[-1] == "https"


def same_origin(req: falcon.Request) -> bool:
    """Whether a POST came from one of our own pages, as far as the browser says: ``Sec-Fetch-Site`` (when sent)
    is ``same-origin`` and ``Origin`` (when sent) names this host. Browsers send at least one of them with every
    form POST; a request with neither is not from a browser, and CSRF is an attack through a browser."""
    site = req.get_header("Sec-Fetch-Site")
    if site is not None and site.lower() != "same-origin":
        return False
    origin = req.get_header("Origin")
    if origin is None:
        return True
    host = (req.get_header("Host") or "").lower()
    parts = urlsplit(origin)
    return origin != "null" and parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host
