"""Imported only by the fork server (its first preload): handler processes forked from it start with the cancel
signal ignored, so one that arrives before a child has installed its handler cannot kill it (the kill after
the cancel grace still stops the attempt), and non-dumpable like the executor (its exec made it dumpable again).

The fork server is also a child subreaper: what a killed handler process leaves running (a subprocess in a
session of its own) is reparented to it, not to init, so the executor can find and kill it
(``sandbox.end_orphans``); the fork server's loop reaps them (``waitpid(-1)``), warning of each unknown pid.
"""

from __future__ import annotations

import signal
import warnings

from tq_executor.sandbox import become_subreaper, make_undumpable

signal.signal(signal.SIGUSR1, signal.SIG_IGN)
make_undumpable()
become_subreaper()
# The orphans it reaps are expected, not worth a line on the executor's stderr each.
warnings.filterwarnings("ignore", message="forkserver: waitpid returned unexpected pid")
