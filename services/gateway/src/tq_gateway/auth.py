"""Bearer-token authentication: a middleware that puts the caller's ``Principal`` on the request."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import falcon

from tqcore.domain.access import Principal

#: The contract's dev principals (section 1): local stack only.
DEV_PRINCIPALS: Mapping[str, Principal] = {
    "dev-alice": Principal("alice", frozenset({"team-a"})),
    "dev-bob": Principal("bob", frozenset({"team-b"})),
    "dev-carol": Principal("carol", frozenset({"team-a", "team-b"})),
    "dev-admin": Principal("admin", frozenset(), admin=True),
}

#: Paths anyone may call.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


class Unauthenticated(falcon.HTTPUnauthorized):
    """No token, or one we do not know."""

    def __init__(self, detail: str) -> None:
        super().__init__(title="Unauthorized", description=detail, challenges=["Bearer"])


class BearerAuth:
    """Resolves ``Authorization: Bearer <token>`` to a principal in ``req.context.principal``."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        self._principals = principals

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if req.path in PUBLIC_PATHS or resource is None:
            return
        header = req.get_header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("send 'Authorization: Bearer <token>'")
        principal = self._principals.get(token.strip())
        if principal is None:
            raise Unauthenticated("unknown token")
        req.context.principal = principal
