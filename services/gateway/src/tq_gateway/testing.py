"""The gateway over tqcore's in-memory fakes, for unit tests of its HTTP behaviour (no I/O)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import falcon
import falcon.testing

from tq_gateway.app import build_app
from tq_gateway.settings import GatewaySettings
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskQueries, InMemoryTaskStore, RecordingQueue


def app_over_fakes(
    settings: GatewaySettings | None = None,
    *,
    store: InMemoryTaskStore | None = None,
    queue: RecordingQueue | None = None,
    registry: InMemoryRegistry | None = None,
    clock: FixedClock | None = None,
    **adapters: Any,
) -> falcon.App[Any, Any]:
    """``build_app`` over fresh fakes (or the given ones): type ``echo`` registered, ids ``t-1``, ``t-2``…;
    ``adapters`` go to ``build_app`` as they are (``logs``, ``api_keys``, ``replicas``...)."""
    store = store if store is not None else InMemoryTaskStore()
    ids = (f"t-{n}" for n in itertools.count(1))
    return build_app(
        settings or GatewaySettings(),
        store=store,
        queries=InMemoryTaskQueries(store),
        queue=queue if queue is not None else RecordingQueue(),
        registry=registry if registry is not None else InMemoryRegistry(["echo"]),
        clock=clock or FixedClock(),
        **{"new_id": lambda: next(ids), **adapters},
    )


def client_over_fakes(settings: GatewaySettings | None = None, **fakes: Any) -> falcon.testing.TestClient:
    """A test client of :func:`app_over_fakes`."""
    return falcon.testing.TestClient(app_over_fakes(settings, **fakes))


#: The CSRF field of a console page's forms.
_CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
FORM = "application/x-www-form-urlencoded"


class Browser:
    """A console user over a test client: keeps the session cookie and the last page's CSRF token, as a browser
    would (same-origin POSTs send ``Origin`` and ``Sec-Fetch-Site`` like Chromium does)."""

    def __init__(self, client: falcon.testing.TestClient) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}
        self.csrf = ""

    def get(self, path: str, **params: str) -> falcon.testing.Result:
        """GET a page (not following redirects); remembers its CSRF token."""
        result = self.client.simulate_get(path, params=params or None, cookies=self.cookies)
        self._keep(result)
        return result

    def post(
        self,
        path: str,
        fields: Mapping[str, str] | Sequence[tuple[str, str]] = (),
        *,
        csrf: bool = True,
        headers: Mapping[str, str] | None = None,
    ) -> falcon.testing.Result:
        """POST a form (with the remembered CSRF token unless ``csrf`` is false) from one of our own pages."""
        pairs = list(fields.items()) if isinstance(fields, Mapping) else list(fields)
        if csrf:
            pairs.append(("csrf", self.csrf))
        sent = {
            "Content-Type": FORM,
            "Origin": "http://falconframework.org",
            "Sec-Fetch-Site": "same-origin",
            **(headers or {}),
        }
        result = self.client.simulate_post(path, body=urlencode(pairs), headers=sent, cookies=self.cookies)
        self._keep(result)
        return result

    def sign_in(self, token: str = "dev-alice") -> falcon.testing.Result:  # noqa: S107 - a dev token
        """Sign in with ``token`` and open the overview (so the CSRF token is known)."""
        result = self.post("/ui/session", {"token": token}, csrf=False)
        assert result.status_code == 303, result.text
        self.get("/ui/")
        return result

    def _keep(self, result: falcon.testing.Result) -> None:
        for name, cookie in result.cookies.items():
            if cookie.max_age == 0 or (cookie.expires is not None and not cookie.value):
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = cookie.value
        found = _CSRF.search(result.text) if result.headers.get("content-type", "").startswith("text/html") else None
        if found:
            self.csrf = found.group(1)


def browser_over_fakes(settings: GatewaySettings | None = None, **fakes: Any) -> Browser:
    """A :class:`Browser` on :func:`app_over_fakes` (signed out)."""
    return Browser(client_over_fakes(settings, **fakes))
