"""Bearer-token authentication: a middleware that puts the caller's ``Principal`` on the request.

The middleware asks a chain of authenticators, one per accepted kind of token (``TQ_AUTH``); each recognises its
own kind by its shape and ignores the others. Tokens are never logged, and never put in an error message.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import falcon

from tq_gateway.auth_failures import REFUSED, FailureBudget, client_address
from tq_gateway.jwt_auth import InvalidToken, JwtTokens
from tq_gateway.settings import GatewaySettings
from tqcore.api_keys import ApiKeys
from tqcore.domain.access import Principal, api_key_hash

#: The contract's dev principals (section 1): local stack only.
DEV_PRINCIPALS: Mapping[str, Principal] = {
    "dev-alice": Principal("alice", frozenset({"team-a"})),
    "dev-bob": Principal("bob", frozenset({"team-b"})),
    "dev-carol": Principal("carol", frozenset({"team-a", "team-b"})),
    "dev-admin": Principal("admin", frozenset(), admin=True),
}

#: Paths anyone may call.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})

#: The console's paths: they authenticate by a session cookie (``tq_gateway.console``), not this header.
CONSOLE_PREFIX = "/ui"

#: How long a gateway worker trusts an API key it looked up: a revocation takes effect within this time.
API_KEY_CACHE_S = 10.0
#: How long a gateway worker remembers a token it refused.
REFUSED_CACHE_S = 2.0


class Unauthenticated(falcon.HTTPUnauthorized):
    """No token, or one we do not know."""

    def __init__(self, detail: str) -> None:
        super().__init__(title="Unauthorized", description=detail, challenges=["Bearer"])


class Authenticator(Protocol):
    """Resolves one kind of bearer token."""

    def authenticate(self, token: str, *, lookup: bool = True) -> Principal | None:
        """The caller, or ``None`` if the token is not of this kind or unknown (or, without ``lookup``, not known
        without reading a store); ``InvalidToken`` to refuse."""
        ...


class DevTokens:
    """The fixed dev tokens (``dev-alice`` ...)."""

    def __init__(self, principals: Mapping[str, Principal] = DEV_PRINCIPALS) -> None:
        self._principals = principals

    def authenticate(self, token: str, *, lookup: bool = True) -> Principal | None:
        """The dev principal named by the token."""
        return self._principals.get(token)


class CachedApiKeys:
    """API keys, each lookup remembered (by the token's hash, not the token): a key found for ``ttl_s``, a token
    refused for ``refused_ttl_s`` (so a client repeating a bad token costs no read per request; a new key's id is
    random, so it is never among the refused). Each of the two caches holds ``max_entries`` and evicts its oldest
    entry first, so a flood of bad tokens never pushes a good key out."""

    def __init__(
        self,
        keys: ApiKeys,
        ttl_s: float = API_KEY_CACHE_S,
        max_entries: int = 10_000,
        monotonic: Callable[[], float] = time.monotonic,
        refused_ttl_s: float = REFUSED_CACHE_S,
    ) -> None:
        self._keys = keys
        self._ttl_s = ttl_s
        self._refused_ttl_s = refused_ttl_s
        self._max_entries = max_entries
        self._monotonic = monotonic
        #: Token hash -> (expiry, principal) of the keys found, and -> expiry of the tokens refused; oldest first.
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._refused: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def authenticate(self, token: str, *, lookup: bool = True) -> Principal | None:
        """The key's principal, from the cache or (with ``lookup``) the store."""
        digest = api_key_hash(token)
        now = self._monotonic()
        with self._lock:
            known = self._cache.get(digest)
            if known is not None and known[0] > now:
                return known[1]
            refused_until = self._refused.get(digest)
            if refused_until is not None and refused_until > now:
                return None
        if not lookup:
            return None
        principal = self._keys.authenticate(token)
        with self._lock:
            if principal is None:
                remember(self._refused, digest, now + self._refused_ttl_s, self._max_entries)
            else:
                remember(self._cache, digest, (now + self._ttl_s, principal), self._max_entries)
        return principal


def is_console(path: str) -> bool:
    """Whether ``path`` is one of the console's (``/ui`` and below)."""
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


def remember(cache: OrderedDict[str, Any], key: str, value: Any, max_entries: int) -> None:
    """Put ``key`` in ``cache`` as its newest entry, evicting the oldest beyond ``max_entries``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > max_entries:
        cache.popitem(last=False)


class BearerAuth:
    """Resolves ``Authorization: Bearer <token>`` to a principal in ``req.context.principal``: the one place a
    request is authenticated or refused (401, or 429 for an address over its budget of failures)."""

    def __init__(
        self,
        authenticators: Sequence[Authenticator],
        failures: FailureBudget | None = None,
        trusted_proxy_hops: int = 0,
    ) -> None:
        self._authenticators = list(authenticators)
        self._failures = failures
        self._trusted_proxy_hops = trusted_proxy_hops

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if req.path in PUBLIC_PATHS or resource is None or is_console(req.path):
            return  # the console's pages authenticate by their session cookie (``console.gate``), through principal()
        header = req.get_header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        req.context.principal = self.principal(token, client_address(req, self._trusted_proxy_hops))

    def principal(self, token: str, address: str = "") -> Principal:
        """The first authenticator's answer for ``token`` from ``address``: ``Unauthenticated`` if none knows
        it; ``TooManyFailures``, before any lookup, if the address is over its budget and the token is not known
        without one."""
        refusal = self._failures.check(address) if self._failures else None
        if refusal is not None:
            known = self._resolve(token, lookup=False) if token else None
            if known is None:
                REFUSED.inc()
                raise refusal
            return known
        try:
            if not token:
                raise Unauthenticated("send 'Authorization: Bearer <token>'")
            principal = self._resolve(token, lookup=True)
            if principal is None:
                raise Unauthenticated("unknown token")
        except Unauthenticated:
            if self._failures:
                self._failures.failed(address)
            raise
        return principal

    def _resolve(self, token: str, *, lookup: bool) -> Principal | None:
        for authenticator in self._authenticators:
            try:
                principal = authenticator.authenticate(token, lookup=lookup)
            except InvalidToken as error:
                if not lookup:
                    return None
                raise Unauthenticated(f"invalid token: {error}") from None
            if principal is not None:
                return principal
        return None


def authenticators(settings: GatewaySettings, api_keys: ApiKeys | None) -> list[Authenticator]:
    """The chain ``TQ_AUTH`` asks for (API keys need ``api_keys``)."""
    chain: list[Authenticator] = []
    for kind in dict.fromkeys(settings.auth):
        if kind == "keys":
            if api_keys is None:
                raise ValueError("TQ_AUTH=keys needs an API key store")
            chain.append(CachedApiKeys(api_keys))
        elif kind == "jwt":
            chain.append(JwtTokens.from_settings(settings))
        else:
            chain.append(DevTokens())
    return chain
