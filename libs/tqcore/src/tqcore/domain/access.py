"""Who may do what: principals and per-group access, pure."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user name, the security groups they belong to, and admin rights."""

    name: str
    groups: frozenset[str]
    admin: bool = False

    def can_see(self, group: str) -> bool:
        """May read and manage tasks of ``group``."""
        return self.admin or group in self.groups

    def can_submit(self, group: str) -> bool:
        """May submit tasks into ``group``."""
        return self.can_see(group)


#: An API key as handed out: ``tq_<key id>_<secret>``. The key id is hex (no ``_``), the secret urlsafe base64.
API_KEY_PREFIX = "tq_"
_API_KEY = re.compile(r"^tq_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class ApiKey:
    """An API key's record: whom it authenticates, and when it was made and revoked. Never the token itself."""

    key_id: str
    user: str
    groups: frozenset[str]
    admin: bool
    created_at: datetime
    created_by: str | None = None
    revoked_at: datetime | None = None

    @property
    def principal(self) -> Principal:
        """The caller this key authenticates."""
        return Principal(self.user, self.groups, admin=self.admin)


def api_key_token(key_id: str, secret: str) -> str:
    """The token a user sends (and sees once, at creation)."""
    return f"{API_KEY_PREFIX}{key_id}_{secret}"


def api_key_id(token: str) -> str | None:
    """The key id inside a well-formed API key token, or ``None`` if ``token`` is not one."""
    match = _API_KEY.match(token)
    return match.group(1) if match else None


def api_key_hash(token: str) -> str:
    """What is stored instead of the token: its SHA-256, hex.

    A plain hash suffices: the secret is 32 random bytes (256 bits), so nobody can guess it from the hash and
    no dictionary helps. Slow password KDFs (bcrypt, scrypt, argon2) exist for low-entropy human passwords, and
    here would only cost CPU on every uncached request.
    """
    return hashlib.sha256(token.encode()).hexdigest()
