"""Gateway settings (``TQ_*`` environment variables)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from tqcore.domain.commands import MAX_PAYLOAD_NODES
from tqcore.listing import PAGE_BYTES
from tqcore.settings import CoreSettings

AuthKind = Literal["dev", "keys", "jwt"]
#: The services that heartbeat presence: what ``TQ_READY_REQUIRES`` may name.
SERVICES = ("gateway", "executor", "scheduler", "reaper")
#: Production accepts API keys only; the local stack and the tests add ``dev`` (``TQ_AUTH``).
DEFAULT_AUTH: tuple[AuthKind, ...] = ("keys",)


class GatewaySettings(CoreSettings):
    """How the HTTP API listens, authenticates and decides it is ready."""

    #: Where the HTTP API (and its ``/metrics``) listens.
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(default=8080, ge=1, le=65535)
    #: gunicorn worker processes (one per vCPU the replica has) and threads in each. Threads of one process
    #: share their task-store writes and SQS sends (group commit): fewer, fuller processes make fewer AWS calls.
    gateway_workers: int = Field(default=1, ge=1, le=64)
    gateway_threads: int = Field(default=8, ge=1, le=64)
    #: Connections one worker holds at once besides its ``gateway_streams`` (gunicorn's ``worker_connections`` is
    #: their sum): requests in its threads, heads being read and idle keep-alive connections. Beyond it the worker
    #: stops accepting (the kernel queues). Each connection may buffer a request (64 KiB of head and a body of the
    #: larger of ``max_body_bytes`` and ``max_batch_body_bytes``): 544 MiB at most per worker by default (512
    #: connections), if every connection sends a full batch.
    gateway_connections: int = Field(default=256, ge=2, le=10_000)
    #: Requests one worker lets wait for a task at once: SSE streams and reads with ``wait_s``. Each holds a
    #: thread and a connection, on top of ``gateway_threads`` and ``gateway_connections`` (the worker has that
    #: many more of each), so ordinary requests always find a thread; one more is answered 503 with Retry-After
    #: (0: every one is).
    gateway_streams: int = Field(default=256, ge=0, le=4096)
    #: Of those, how many one principal (a user or API key's name) may hold at once in one worker; one more is
    #: answered 503 with Retry-After, so one tenant cannot take every slot and starve the others' streams and waits.
    gateway_streams_per_principal: int = Field(default=64, ge=1, le=4096)
    #: How often the worker's watch reads the state of the tasks its streams and waits follow (one BatchGetItem
    #: per 100 tasks a round, whatever the number of waiting requests): how late a stream or a wait can be.
    watch_interval_s: float = Field(default=0.25, ge=0.05, le=5)
    #: Seconds a silent stream waits before a keep-alive comment (``: ping``): proxies keep it open, and a client
    #: that left is found (a write fails: usually the second after it left) and its slot freed. At most 25: the
    #: ``tq`` client takes 30 s of silence for a broken stream (``tq.follow.PING_S`` + ``tq.calls.READ_GRACE_S``).
    stream_ping_s: float = Field(default=15, gt=0, le=25)
    #: Seconds a stream lasts at most before the gateway ends it; the client reconnects with ``Last-Event-ID``
    #: (to any replica), so no connection outlives a deploy by long.
    stream_max_s: float = Field(default=300, gt=0, le=86_400)
    #: Deadlines for a client to send its request head (from its first byte, or from the accept), then its body
    #: (a ``Content-Length`` body up to ``max_body_bytes``), and to finish the TLS handshake; read in the
    #: worker's event loop, so a slow client holds a socket, never a thread.
    request_head_timeout_s: float = Field(default=10, gt=0, le=300)
    request_body_timeout_s: float = Field(default=30, gt=0, le=300)
    tls_handshake_timeout_s: float = Field(default=5, gt=0, le=300)
    #: Proxies in front of the gateway that append the peer they saw to ``X-Forwarded-For`` (an AWS ALB: 1).
    #: The client's address is then that header's entry this many from the right; 0 trusts no header.
    trusted_proxy_hops: int = Field(default=0, ge=0, le=10)
    #: Failed authentications one client address may make per second (all workers of a host together) before
    #: its requests without a known token get 429, without a token lookup; 0 switches this off.
    auth_failure_rps: float = Field(default=20, ge=0)
    #: ... and at once, before ``auth_failure_rps`` applies.
    auth_failure_burst: int = Field(default=40, ge=1)
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
    #: The body limit of a batch submit (``POST /v1/tasks:batch``, up to 500 tasks): 1 MiB holds 500 tasks of about
    #: 2 KiB each. Each task still meets ``max_body_bytes``'s item limit and ``max_json_nodes``; the whole body is
    #: parsed first, and 1 MiB of ``[{},{},...]`` is about 24 MiB of Python objects for the request's life. The
    #: worker's event loop buffers bodies up to the larger of the two limits.
    max_batch_body_bytes: int = Field(default=1024 * 1024, ge=64 * 1024, le=16 * 1024 * 1024)
    #: JSON nodes (values and object keys) a task's payload may hold: submit and PATCH answer 413 beyond. Bytes
    #: alone do not bound memory: 256 KiB of ``[{},{},...]`` is 87,000 nodes, 6 MiB once parsed.
    max_json_nodes: int = Field(default=MAX_PAYLOAD_NODES, ge=100, le=1_000_000)
    #: Bytes of tasks a listing page (``/v1/tasks``, ``/v1/dlq``) holds at most: a page ends early there, with
    #: a ``next_cursor`` (one task larger than this still makes a page).
    list_page_bytes: int = Field(default=PAGE_BYTES, ge=1024, le=64 * 1024 * 1024)
    #: Services that must have a live instance before ``/readyz`` answers 200 (comma-separated).
    ready_requires: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: Requests per second one principal may make to the whole API (all replicas together); 0 switches the
    #: rate limit off.
    rate_limit_rps: float = Field(default=200, ge=0)
    #: Requests one principal may make at once before ``rate_limit_rps`` applies (the token bucket's size).
    rate_limit_burst: int = Field(default=400, ge=1)
    #: The console's key (``/ui``): it encrypts the session cookie and signs the forms' CSRF tokens. Unset, the
    #: gunicorn master makes a random one at start that its workers share; sessions then end when it restarts,
    #: and several replicas behind one load balancer need one set (the same on every replica).
    console_secret: SecretStr | None = None
    #: How long a console session lasts after sign-in (the cookie's lifetime); an API key revoked meanwhile
    #: ends it within the key cache's 10 s.
    console_session_s: float = Field(default=8 * 3600, ge=60, le=7 * 86_400)
    #: How often an open tasks table (the console's ``/ui/tasks/live`` stream) looks whether its page would differ:
    #: the state of the rows on screen (one BatchGetItem) and, on a first page, the newest task of each listed group
    #: (one keys-only Query each; none for an admin's table of every group); only when one moved is the page read
    #: again. How late a table can be.
    console_table_check_s: float = Field(default=2, ge=0.5, le=60)
    #: How often an open filtered tasks table (status, type or name) reads its page again though nothing on screen
    #: moved, for older tasks that entered the filter (a task turning failed under status=failed): up to the
    #: listing's scan budget (1,000 tasks: ~10 Queries and ~91 BatchGetItems) each time; never for a page whose last
    #: read stopped at that budget. How late such a task can show.
    console_table_relist_s: float = Field(default=60, ge=0.5, le=3600)
    #: Set by the gunicorn master for its workers: the host's shared rate-limit table file ...
    rate_limit_table: str | None = None
    #: ... the host's shared table of failed authentications per client address ...
    auth_failure_table: str | None = None
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
        if self.gateway_connections <= self.gateway_threads:
            raise ValueError("TQ_GATEWAY_CONNECTIONS must be greater than TQ_GATEWAY_THREADS")
        if self.console_secret is not None and len(self.console_secret.get_secret_value()) < 32:
            raise ValueError("TQ_CONSOLE_SECRET must be at least 32 characters (e.g. `openssl rand -base64 32`)")
        unknown = [name for name in self.ready_requires if name not in SERVICES]
        if unknown:  # /readyz would wait for it forever
            raise ValueError(
                f"TQ_READY_REQUIRES names {', '.join(unknown)}: no such service (one of {', '.join(SERVICES)})"
            )
        return self
