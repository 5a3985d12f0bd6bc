"""``/ui/``: the overview when signed in, else the sign-in form."""

from __future__ import annotations

import falcon

from tq_gateway.console.gate import Access
from tq_gateway.console.pages_session import sign_in_page
from tq_gateway.console.render import Renderer


class Overview:
    """``GET /ui/``: the overview (a placeholder until the overview's data lands), or the sign-in form."""

    access = Access.OPTIONAL

    def __init__(self, renderer: Renderer) -> None:
        self._renderer = renderer

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if req.context.principal is None:
            sign_in_page(self._renderer, req, resp)
            return
        self._renderer.render(req, resp, "overview.html")
