"""API keys: create one (its token shown once), authenticate a token, list and revoke keys."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Iterable

from tqcore.domain.access import ApiKey, Principal, api_key_hash, api_key_id, api_key_token
from tqcore.ports import ApiKeyStore, Clock

#: Random bytes in a token's secret part (256 bits: see :func:`tqcore.domain.access.api_key_hash`).
SECRET_BYTES = 32


def new_key_id() -> str:
    """A new key id: 8 random bytes, hex (public: it names the key in listings and logs)."""
    return secrets.token_hex(8)


def new_secret() -> str:
    """A new secret: ``SECRET_BYTES`` random bytes, urlsafe base64 without padding (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


class ApiKeys:
    """The API key use cases over an ``ApiKeyStore``; only hashes of tokens are ever stored."""

    def __init__(
        self,
        store: ApiKeyStore,
        clock: Clock,
        new_id: Callable[[], str] = new_key_id,
        new_secret: Callable[[], str] = new_secret,
    ) -> None:
        self._store = store
        self._clock = clock
        self._new_id = new_id
        self._new_secret = new_secret

    def create(
        self, user: str, groups: Iterable[str], *, admin: bool = False, by: str | None = None
    ) -> tuple[ApiKey, str]:
        """A new key for ``user`` and its token: the only time the token exists outside its holder."""
        key = ApiKey(self._new_id(), user, frozenset(groups), admin, self._clock.now(), created_by=by)
        token = api_key_token(key.key_id, self._new_secret())
        self._store.add(key, api_key_hash(token))
        return key, token

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a live key whose token this is; ``None`` for anything else."""
        key_id = api_key_id(token)
        if key_id is None:
            return None
        found = self._store.find(key_id)
        if found is None:
            return None
        key, stored_hash = found
        # Constant time: how much of the hash matched must not show in the response time.
        if not hmac.compare_digest(api_key_hash(token), stored_hash) or key.revoked_at is not None:
            return None
        return key.principal

    def all(self) -> list[ApiKey]:
        """Every key, oldest first (no secrets: the store has none, and no hashes)."""
        return self._store.all()

    def revoke(self, key_id: str) -> ApiKey | None:
        """Revoke a key now; ``None`` if there is no such key."""
        return self._store.revoke(key_id, self._clock.now())
