"""Rendering the console's pages (Jinja2, autoescaped, strict) and serving its static assets by fingerprint."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import falcon
import jinja2

#: The package holding ``templates/`` and ``static/``.
PACKAGE = "tq_gateway.console"
#: Where the assets are served.
STATIC_PREFIX = "/ui/static/"
#: Assets are served under names that change with their content: a browser may keep one forever.
IMMUTABLE = "public, max-age=31536000, immutable"
HTML = "text/html; charset=utf-8"
#: What a page says after an action redirected to it with ``?done=<key>``: only these texts, so a link cannot make
#: a page say something of its own choosing. Pages add their actions' keys here.
NOTICES = {
    "cancelled": "Cancelled.",
    "cancel_requested": "Cancel requested: the running attempt is told to stop at its next heartbeat.",
    "redriven": "Redriven: queued again with a fresh retry budget.",
    "paused": "Paused: no slot runs until it is resumed.",
    "pause_requested": "Pausing: the run under way finishes first.",
    "resumed": "Resumed: it goes on with its next slot.",
    "updated": "Saved.",
}


@dataclass(frozen=True)
class Asset:
    """A static file as served: its bytes and content type."""

    data: bytes
    content_type: str


class Assets:
    """The files of ``static/``, each under a fingerprinted name (``console.css`` -> ``console.1a2b3c4d5e6f.css``)."""

    def __init__(self) -> None:
        self._urls: dict[str, str] = {}
        self._served: dict[str, Asset] = {}
        for entry in resources.files(PACKAGE).joinpath("static").iterdir():
            if not entry.is_file() or entry.name.startswith("."):
                continue
            data = entry.read_bytes()
            stem, dot, ext = entry.name.rpartition(".")
            served = f"{stem}.{hashlib.sha256(data).hexdigest()[:12]}{dot}{ext}"
            kind = mimetypes.guess_type(entry.name)[0] or "application/octet-stream"
            if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
                kind += "; charset=utf-8"
            self._urls[entry.name] = STATIC_PREFIX + served
            self._served[served] = Asset(data, kind)

    def url(self, name: str) -> str:
        """The URL a page links ``name`` (a file of ``static/``) by; ``KeyError`` for a file that is not there."""
        return self._urls[name]

    def get(self, served: str) -> Asset | None:
        """The asset served under the fingerprinted name, if any."""
        return self._served.get(served)


def when(value: str | datetime | None) -> str:
    """A timestamp as pages show it: ``2026-01-05 08:01:00Z`` (UTC, to the second); empty for none."""
    if value is None or value == "":
        return ""
    at = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class Renderer:
    """The Jinja2 environment of the console's templates."""

    def __init__(self, assets: Assets) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader(PACKAGE, "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.globals["asset"] = assets.url
        self._env.filters["when"] = when

    def html(self, template: str, **context: Any) -> str:
        """The template rendered with ``context``."""
        return self._env.get_template(template).render(**context)

    def render(
        self, req: falcon.Request, resp: falcon.Response, template: str, *, status: int = 200, **ctx: Any
    ) -> None:
        """Answer with the page ``template`` renders. Every page gets ``principal`` (``None`` when signed out),
        ``csrf`` (the session's token, for ``forms.csrf_field()``), ``path`` and ``notice`` (the text of the ``done``
        key an action redirected with, see ``NOTICES``) besides ``ctx``."""
        resp.status = status
        resp.content_type = HTML
        resp.text = self.html(
            template,
            principal=getattr(req.context, "principal", None),
            csrf=getattr(req.context, "csrf", ""),
            path=req.path,
            notice=NOTICES.get(req.get_param("done") or "", ""),
            **ctx,
        )
