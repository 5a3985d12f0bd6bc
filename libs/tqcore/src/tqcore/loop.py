"""Periodic services (scheduler, reaper): the run loop they share; each wires itself (``create_service``)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prometheus_client.registry import Collector

from tqcore.activity import ACTIVITY
from tqcore.metrics import serve_metrics
from tqcore.ports import Registry
from tqcore.presence import Presence
from tqcore.settings import CoreSettings

log = logging.getLogger(__name__)


@runtime_checkable
class Periodic(Protocol):
    """A periodic service's pass that holds resources: ``tick`` runs a pass, ``close`` releases them."""

    def tick(self) -> object:
        """One pass; a ``float`` return is the pause before the next."""
        ...

    def close(self) -> None:
        """Finish (e.g. send what was staged) and release threads."""
        ...


@dataclass(frozen=True)
class PeriodicService:
    """A periodic service wired by its composition root: its pass, the pause between passes, where it announces
    itself, and the service's own ``/metrics`` collectors."""

    name: str
    one_pass: Callable[[], object] | Periodic
    interval_s: float
    registry: Registry
    collectors: Sequence[Collector] = ()


def run_periodic_service(service: PeriodicService, settings: CoreSettings) -> int:
    """Serve ``/metrics``, announce presence, and run the pass every ``interval_s`` until SIGTERM."""
    serve_metrics(settings, *service.collectors)
    # Its heartbeat carries what its commits did lately (a reaper's failed lost attempts, a scheduler's lag).
    presence = Presence(service.registry, service.name, instance_name(), interval_s=5, activity=ACTIVITY.snapshot)
    presence.start()
    made = service.one_pass
    run_every(service.interval_s, made.tick if isinstance(made, Periodic) else made)
    if isinstance(made, Periodic):
        made.close()
    presence.stop()
    return 0


def instance_name() -> str:
    """This process as the presence registry names it: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_every(interval_s: float, one_pass: Callable[[], object], stop: threading.Event | None = None) -> None:
    """Call ``one_pass`` every ``interval_s`` seconds until SIGTERM/SIGINT (or ``stop`` is set).

    A pass that returns a ``float`` names its own pause before the next pass (the scheduler's, when it knows
    a task falls due sooner than the interval).
    """
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        pause_s = interval_s
        try:
            asked = one_pass()
            if isinstance(asked, float):
                pause_s = asked
        except Exception:
            log.exception("pass failed; retrying next interval")
        stop.wait(pause_s)
