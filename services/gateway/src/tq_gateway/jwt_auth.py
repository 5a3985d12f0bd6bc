"""JSON Web Tokens from an identity provider: signature, issuer, audience and expiry checked, claims mapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from tq_gateway.settings import GatewaySettings
from tqcore.domain.access import Principal

#: RFC 7518 3.2: an HMAC key at least as long as the hash.
MIN_HS256_SECRET_BYTES = 32


class InvalidToken(Exception):
    """Raised by an authenticator for a token of its kind that it refuses (bad signature, expired ...)."""


class JwtTokens:
    """Verifies JWTs with the one configured algorithm and key, then maps ``sub``, groups and admin claims."""

    def __init__(
        self,
        *,
        algorithm: str,
        key: Any,
        issuer: str,
        audience: str,
        groups_claim: str = "groups",
        admin_claim: str = "tq_admin",
    ) -> None:
        if algorithm == "HS256" and len(key) < MIN_HS256_SECRET_BYTES:
            raise ValueError(f"an HS256 secret needs at least {MIN_HS256_SECRET_BYTES} bytes")
        self._algorithm = algorithm
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._groups_claim = groups_claim
        self._admin_claim = admin_claim

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> JwtTokens:
        """From ``TQ_JWT_*`` (a public key may be PEM text or a path to a PEM file)."""
        key: Any
        if settings.jwt_algorithm == "HS256":
            assert settings.jwt_secret is not None  # the settings validator insists
            key = settings.jwt_secret.get_secret_value().encode()
        else:
            pem = settings.jwt_public_key or ""
            if "-----BEGIN" not in pem:
                pem = Path(pem).read_text()
            # Parsed now, so a bad key stops the gateway at start-up rather than failing every request.
            key = load_pem_public_key(pem.encode())
        assert settings.jwt_issuer is not None
        assert settings.jwt_audience is not None
        return cls(
            algorithm=settings.jwt_algorithm,
            key=key,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            groups_claim=settings.jwt_groups_claim,
            admin_claim=settings.jwt_admin_claim,
        )

    def authenticate(self, token: str, *, lookup: bool = True) -> Principal | None:
        """The token's principal; ``None`` if it is not a JWT at all, ``InvalidToken`` if it fails a check."""
        if token.count(".") != 2:
            return None
        try:
            # The algorithm list is ours: a token saying "alg": "none", or HS256 signed with our public key,
            # is refused before any key is used.
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[self._algorithm],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.InvalidTokenError as error:
            raise InvalidToken(str(error)) from None
        subject = claims["sub"]
        groups = claims.get(self._groups_claim)
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("the 'sub' claim must name the user")
        # Required even if empty: a token that does not say which groups is a misconfigured issuer, not a user
        # with no groups.
        if not isinstance(groups, list) or not all(isinstance(group, str) for group in groups):
            raise InvalidToken(f"the {self._groups_claim!r} claim must be a list of group names")
        return Principal(subject, frozenset(groups), admin=claims.get(self._admin_claim) is True)
