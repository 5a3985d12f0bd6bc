"""A budget of failed authentications per client address, so a flood of bad tokens costs no token lookups.

Each failed authentication (no token, an unknown one, a refused JWT) takes one from its client address's GCRA
bucket, in a table every worker of the host shares (``buckets``; bounded: a fixed number of slots, each free again
once its bucket has refilled). An address with an empty bucket gets 429 before any token is looked up, unless its
token is one the gateway knows without a lookup (a dev token, a valid JWT, an API key this worker has cached): a
client sharing an address (a NAT) with an attacker keeps working, the attacker's guesses cost nothing.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable

import falcon
from prometheus_client import Counter

from tq_gateway.buckets import SharedBuckets
from tq_gateway.settings import GatewaySettings

REFUSED = Counter(
    "tq_auth_failures_refused_total",
    "API requests refused with 429, before any token lookup, because their address failed authentication too often.",
)


class TooManyFailures(Exception):
    """Raised when a client address is over its budget of failed authentications (429 with ``Retry-After``)."""

    def __init__(self, retry_after_s: int, rate: float, burst: int) -> None:
        super().__init__(
            f"too many failed authentications from this address ({rate:g}/s, burst {burst}); retry in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


def client_address(req: falcon.Request, trusted_proxy_hops: int) -> str:
    """The client's address: the peer's, or behind ``trusted_proxy_hops`` proxies the ``X-Forwarded-For`` entry
    the outermost of them appended (entries left of it are the client's own say). IPv6 counts by its /64 (one
    host's share), so an attacker cannot make a fresh address per request."""
    address = req.remote_addr or ""
    if trusted_proxy_hops:
        hops = [hop.strip() for hop in (req.get_header("X-Forwarded-For") or "").split(",") if hop.strip()]
        if len(hops) >= trusted_proxy_hops:  # fewer: it did not come through the proxies; the peer is the client
            address = hops[-trusted_proxy_hops]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureBudget:
    """Per-address buckets of failed authentications: ``rate`` per second, ``burst`` at once."""

    def __init__(
        self, buckets: SharedBuckets, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets = buckets
        self._rate = rate
        self._burst = burst
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> FailureBudget | None:
        """Over the host's table (``TQ_AUTH_FAILURE_TABLE``, set by the gunicorn master) or a private one;
        ``None`` when ``auth_failure_rps`` is 0."""
        if settings.auth_failure_rps <= 0:
            return None
        buckets = SharedBuckets(settings.auth_failure_table)
        return cls(buckets, rate=settings.auth_failure_rps, burst=settings.auth_failure_burst)

    def check(self, address: str) -> TooManyFailures | None:
        """The refusal due to ``address`` if its budget is spent (nothing taken from it); ``None`` if not."""
        decision = self._buckets.acquire(address, self._rate, self._burst, self._clock(), take=False)
        if decision is None or decision.allowed:  # a full table fails open, as the per-principal limit does
            return None
        return TooManyFailures(max(1, math.ceil(decision.retry_after_s)), self._rate, self._burst)

    def failed(self, address: str) -> None:
        """Take one failed authentication from ``address``'s budget."""
        self._buckets.acquire(address, self._rate, self._burst, self._clock())
