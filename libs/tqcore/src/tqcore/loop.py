"""The run loop shared by the scheduler and the reaper: do a pass every interval until told to stop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


def run_every(interval_s: float, one_pass: Callable[[], object], stop: threading.Event | None = None) -> None:
    """Call ``one_pass`` every ``interval_s`` seconds until SIGTERM/SIGINT (or ``stop`` is set)."""
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.is_set():
        try:
            one_pass()
        except Exception:
            log.exception("pass failed; retrying next interval")
        stop.wait(interval_s)
