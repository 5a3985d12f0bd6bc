"""Per-principal rate limiting: a middleware over the host's shared buckets, its share of the limit per replica.

Across the workers of one host the limit holds exactly (one shared table, see ``buckets``). Across replicas each
host takes ``1/n`` of the rate and of the burst, ``n`` being the live gateway replicas in the presence registry
(one per gunicorn master, however many workers it has): exact when the load balancer spreads a principal's
requests evenly over the replicas (round robin), with no per-request call to a shared store.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import falcon
from prometheus_client import Counter

from tq_gateway.auth import PUBLIC_PATHS
from tq_gateway.buckets import SharedBuckets
from tq_gateway.settings import GatewaySettings
from tqcore.ports import Registry
from tqcore.presence import Presence

log = logging.getLogger(__name__)

#: The presence service name of gateway replicas.
SERVICE = "gateway"

RATE_LIMITED = Counter("tq_rate_limited_total", "API requests refused with 429 by the per-principal rate limit.")
TABLE_FULL = Counter(
    "tq_rate_limit_table_full_total", "API requests let through unlimited because the shared bucket table was full."
)


class RateLimited(Exception):
    """Raised when a principal is over its rate limit (mapped to 429 with ``Retry-After`` in ``errors``)."""

    def __init__(self, principal: str, retry_after_s: int, rate: float, burst: int) -> None:
        super().__init__(
            f"{principal!r} is over its rate limit ({rate:g} requests/s, burst {burst}); retry in {retry_after_s} s"
        )
        self.retry_after_s = retry_after_s


def instance_name(settings: GatewaySettings) -> str:
    """This replica in the presence registry: ``<host>:<gunicorn master pid>`` (so its workers count once).

    The gunicorn master names itself in ``TQ_GATEWAY_INSTANCE`` for its workers; a process served some other
    way is a replica of its own.
    """
    return settings.gateway_instance or f"{socket.gethostname()}:{os.getpid()}"


class Replicas:
    """How many gateway replicas are alive (hosts, not workers), re-read from the registry every ``refresh_s``."""

    def __init__(self, registry: Registry | None = None, *, refresh_s: float = 5.0) -> None:
        self._registry = registry
        self._refresh_s = refresh_s
        self._stop = threading.Event()
        self.count = 1

    def refresh(self) -> None:
        """Count live replicas now; on failure keep the last count (at least this replica is alive)."""
        if self._registry is None:
            return
        try:
            count = max(1, len(self._registry.alive().get(SERVICE, [])))
        except Exception as error:  # noqa: BLE001 - a failed read must not stop the gateway
            log.warning("could not count gateway replicas (keeping %d): %s", self.count, error)
            return
        if count != self.count:
            log.info("gateway replicas: %d (each takes 1/%d of every principal's rate limit)", count, count)
        self.count = count

    def start(self, instance: str) -> None:
        """Announce this replica as ``instance`` and keep the count fresh, in background threads."""
        if self._registry is None:
            return
        Presence(self._registry, SERVICE, instance, interval_s=self._refresh_s).start()
        self.refresh()
        threading.Thread(target=self._run, name="gateway-replicas", daemon=True).start()

    def stop(self) -> None:
        """Stop refreshing."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._refresh_s):
            self.refresh()


class RateLimit:
    """Falcon middleware: after ``BearerAuth``, admits or refuses (429) the request for ``req.context.principal``."""

    def __init__(
        self,
        buckets: SharedBuckets,
        replicas: Replicas,
        *,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._buckets = buckets
        self._replicas = replicas
        self._rate = rate
        self._burst = burst
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: GatewaySettings, replicas: Replicas) -> RateLimit:
        """Over the host's table (``TQ_RATE_LIMIT_TABLE``, set by the gunicorn master) or a private one."""
        if not settings.rate_limit_table:
            log.warning("no shared rate-limit table: each process limits on its own")
        return cls(
            SharedBuckets(settings.rate_limit_table),
            replicas,
            rate=settings.rate_limit_rps,
            burst=settings.rate_limit_burst,
        )

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: Any) -> None:
        if req.path in PUBLIC_PATHS or resource is None:
            return
        principal = getattr(req.context, "principal", None)
        if principal is None:
            return
        replicas = self._replicas.count
        # A replica's share of the burst stays at least one request, or nobody would ever get through.
        decision = self._buckets.acquire(
            principal.name, self._rate / replicas, max(1.0, self._burst / replicas), self._clock()
        )
        if decision is None:
            # Fail open: a full table means thousands of principals busy at once, and refusing them all for
            # that would turn a sizing problem into an outage. It is counted, so it can be alerted on.
            TABLE_FULL.inc()
            return
        if not decision.allowed:
            RATE_LIMITED.inc()
            raise RateLimited(principal.name, max(1, math.ceil(decision.retry_after_s)), self._rate, self._burst)
