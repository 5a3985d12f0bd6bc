"""Imported only by the fork server (its first preload): handler processes forked from it start with the cancel
signal ignored, so one that arrives before a child has installed its handler cannot kill it (the kill after
the cancel grace still stops the attempt), and non-dumpable like the executor (its exec made it dumpable again)."""

from __future__ import annotations

import signal

from tq_executor.sandbox import make_undumpable

signal.signal(signal.SIGUSR1, signal.SIG_IGN)
make_undumpable()
