"""A background heartbeat that tells ``/readyz`` (and operators) a service instance is alive."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tqcore.activity import Activity
from tqcore.ports import Registry

log = logging.getLogger(__name__)


class Presence:
    """Writes ``service``/``instance`` into the registry every ``interval_s`` until stopped, with the instance's
    recent ``activity`` if given (``tqcore.activity``: what the overview sums)."""

    def __init__(
        self,
        registry: Registry,
        service: str,
        instance: str,
        *,
        interval_s: float,
        activity: Callable[[], Activity | None] | None = None,
    ) -> None:
        self._registry = registry
        self._activity = activity
        self._service = service
        self._instance = instance
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"presence-{service}", daemon=True)

    def start(self) -> None:
        """Beat once now, then in the background."""
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        """One heartbeat; failures are logged, not raised (the next beat tries again)."""
        try:
            activity = self._activity() if self._activity is not None else None
            ttl_s = int(self._interval_s * 5) + 5
            self._registry.heartbeat(self._service, self._instance, ttl_s=ttl_s, activity=activity)
        except Exception as error:  # noqa: BLE001 - a missed beat must not kill the service
            log.warning("presence heartbeat failed: %s", error)

    def stop(self) -> None:
        """Stop beating and leave the registry, so the instance stops counting as alive (readiness at once; the
        schedulers' shard ranks and the gateways' rate-limit shares at their next re-read) rather than when its
        last beat runs out. A beat still under way after 10 s could land after the leave: the instance then
        counts until that beat runs out."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)  # a beat under way would otherwise re-add it after the leave
        leave(self._registry, self._service, self._instance)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.beat()


def leave(registry: Registry, service: str, instance: str) -> None:
    """Take an instance out of the registry; a failure is logged (the instance then runs out after its TTL)."""
    try:
        registry.leave(service, instance)
    except Exception as error:  # noqa: BLE001 - stopping must not fail on it
        log.warning("could not leave the presence registry: %s", error)
