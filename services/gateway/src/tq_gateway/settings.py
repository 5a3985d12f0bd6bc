"""Gateway settings (``TQ_*`` environment variables)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from tqcore.settings import CoreSettings

AuthKind = Literal["dev", "keys", "jwt"]
#: The services that heartbeat presence: what ``TQ_READY_REQUIRES`` may name.
SERVICES = ("gateway", "executor", "scheduler", "reaper")
#: Production accepts API keys only; the local stack and the tests add ``dev`` (``TQ_AUTH``).
DEFAULT_AUTH: tuple[AuthKind, ...] = ("keys",)


class GatewaySettings(CoreSettings):
    """How the HTTP API listens, authenticates and decides it is ready."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    gateway_workers: int = Field(default=2, ge=1, le=64)
    gateway_threads: int = Field(default=4, ge=1, le=64)
    #: Accepted bearer tokens, comma-separated: ``keys`` (API keys made with ``tq-keys``), ``jwt`` (signed by
    #: the ``jwt_*`` issuer), ``dev`` (the contract's fixed dev principals: local stack and tests only).
    auth: Annotated[list[AuthKind], NoDecode] = Field(default_factory=lambda: list(DEFAULT_AUTH), min_length=1)
    #: JWT: the one algorithm accepted (the token's own ``alg`` header is never trusted) and its key: a shared
    #: secret for HS256, a public key (PEM text, or a path to a PEM file) for RS256.
    jwt_algorithm: Literal["HS256", "RS256"] = "RS256"
    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None
    #: JWT: the required ``iss`` and ``aud``, and the claims that carry the groups (a list) and admin (a bool).
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_groups_claim: str = "groups"
    jwt_admin_claim: str = "tq_admin"
    #: TLS: serve HTTPS with this certificate chain and key (PEM files); with ``tls_client_ca`` also require a
    #: client certificate signed by that CA (mutual TLS).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    #: At most 320 KiB: a task item (payload, result and all) must stay under DynamoDB's 400 KB item limit.
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=320 * 1024)
    #: Services that must have a live instance before ``/readyz`` answers 200 (comma-separated).
    ready_requires: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Requests per second one principal may make to the whole API (all replicas together); 0 switches the
    #: rate limit off.
    rate_limit_rps: float = Field(default=200, ge=0)
    #: Requests one principal may make at once before ``rate_limit_rps`` applies (the token bucket's size).
    rate_limit_burst: int = Field(default=400, ge=1)
    #: Set by the gunicorn master for its workers: the host's shared rate-limit table file ...
    rate_limit_table: str | None = None
    #: ... and this replica's name in the presence registry (``<host>:<master pid>``).
    gateway_instance: str | None = None

    @field_validator("ready_requires", "auth", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _auth_configured(self) -> GatewaySettings:
        if "jwt" in self.auth:
            key = self.jwt_secret if self.jwt_algorithm == "HS256" else self.jwt_public_key
            if not (key and self.jwt_issuer and self.jwt_audience):
                needs = "TQ_JWT_SECRET" if self.jwt_algorithm == "HS256" else "TQ_JWT_PUBLIC_KEY"
                raise ValueError(f"TQ_AUTH=jwt needs {needs}, TQ_JWT_ISSUER and TQ_JWT_AUDIENCE")
        if bool(self.tls_cert) != bool(self.tls_key) or (self.tls_client_ca and not self.tls_cert):
            raise ValueError("TLS needs both TQ_TLS_CERT and TQ_TLS_KEY (and them for TQ_TLS_CLIENT_CA)")
        unknown = [name for name in self.ready_requires if name not in SERVICES]
        if unknown:  # /readyz would wait for it forever
            raise ValueError(
                f"TQ_READY_REQUIRES names {', '.join(unknown)}: no such service (one of {', '.join(SERVICES)})"
            )
        return self
