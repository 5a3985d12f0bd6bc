"""Imported only by the fork server (its first preload): handler processes forked from it start with the cancel
signal ignored, so one that arrives before a child has installed its handler cannot kill it (the kill after
the cancel grace still stops the attempt)."""

from __future__ import annotations

import signal

signal.signal(signal.SIGUSR1, signal.SIG_IGN)
