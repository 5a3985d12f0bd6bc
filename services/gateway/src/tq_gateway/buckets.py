"""Per-principal token buckets as GCRA, in a table every gunicorn worker of one host shares.

GCRA (the generic cell rate algorithm) *is* a token bucket with rate ``r`` and size ``b``, stored as one number
per key instead of two: the "theoretical arrival time" (TAT), when the bucket would be full again. A request at
``now`` is allowed when ``max(TAT, now) + 1/r - now <= b/r``; it then moves the TAT on by ``1/r``. From a full
bucket that admits ``b`` requests at once, then ``r`` per second, and at most ``b + r * t`` in any window of
``t`` seconds. A TAT in the past is the same as a full bucket, so such a slot holds no state and is reused.

The table is a file of fixed slots (a 64-bit hash of the principal's name, the TAT as a float), mapped into
every worker of the host (``mmap``, under ``/dev/shm`` when there is one) and updated under an ``fcntl`` lock held
for the few microseconds of one read-modify-write. Times are ``time.monotonic()``: one clock for every process
of the host, and immune to wall-clock steps.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import threading
from dataclasses import dataclass

#: One slot: the key hash (0 = never used) and the TAT in monotonic seconds.
SLOT = struct.Struct("<Qd")
#: Slots in a table: 128 KiB. A slot is live only while its principal is within ``b/r`` seconds (2 s at the
#: defaults) of its last request, so this holds thousands of principals active at the same moment.
DEFAULT_SLOTS = 8192
#: Slots probed from a key's home slot before the table counts as full for that key.
PROBE_SLOTS = 32
#: Float slack when comparing times (b requests at one instant must all fit: ``b * (1/r)`` may round up).
_EPSILON_S = 1e-9


@dataclass(frozen=True)
class Decision:
    """The outcome of one request against one bucket."""

    allowed: bool
    #: The TAT to store (unchanged when refused).
    tat: float
    #: Seconds until this request would have been allowed (0 when it is).
    retry_after_s: float


def gcra(tat: float, now: float, rate: float, burst: float) -> Decision:
    """Admit one request at ``now`` to a bucket of ``burst`` requests refilled at ``rate`` per second."""
    interval = 1.0 / rate
    tolerance = burst * interval
    new_tat = max(tat, now) + interval
    if new_tat - now > tolerance + _EPSILON_S:
        return Decision(allowed=False, tat=tat, retry_after_s=new_tat - tolerance - now)
    return Decision(allowed=True, tat=new_tat, retry_after_s=0.0)


def key_hash(name: str) -> int:
    """A 64-bit hash of a principal's name, never 0 (0 marks an unused slot)."""
    value = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return value or 1


def create_table(path: str, slots: int = DEFAULT_SLOTS) -> None:
    """Create (or empty) a table file of ``slots`` unused slots."""
    with open(path, "wb") as file:
        file.truncate(slots * SLOT.size)


class SharedBuckets:
    """GCRA buckets in a table file that several processes map (or, with no path, in this process only)."""

    def __init__(self, path: str | None = None, *, slots: int = DEFAULT_SLOTS) -> None:
        if path is None:
            self._fd = -1
            self._map = mmap.mmap(-1, slots * SLOT.size)
        else:
            self._fd = os.open(path, os.O_RDWR)
            self._map = mmap.mmap(self._fd, os.fstat(self._fd).st_size)
        self._slots = len(self._map) // SLOT.size
        # fcntl locks belong to the process: threads of one worker also need a lock of their own.
        self._threads = threading.Lock()

    def acquire(self, name: str, rate: float, burst: float, now: float, *, take: bool = True) -> Decision | None:
        """Admit one request for ``name`` (or, without ``take``, only say whether one would be admitted);
        ``None`` when every slot it may use is held by a live bucket."""
        key = key_hash(name)
        with self._threads:
            if self._fd >= 0:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                offset = self._find(key, now)
                if offset is None:
                    return None
                stored_key, tat = SLOT.unpack_from(self._map, offset)
                decision = gcra(tat if stored_key == key else now, now, rate, burst)
                if decision.allowed and take:
                    SLOT.pack_into(self._map, offset, key, decision.tat)
                return decision
            finally:
                if self._fd >= 0:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _find(self, key: int, now: float) -> int | None:
        """The offset of ``key``'s slot, else of the first reusable one in its probe window.

        Slots never return to "unused", so a key is always found before the first unused slot of its window.
        """
        home = key % self._slots
        reusable: int | None = None
        for step in range(min(PROBE_SLOTS, self._slots)):
            offset = ((home + step) % self._slots) * SLOT.size
            stored_key, tat = SLOT.unpack_from(self._map, offset)
            if stored_key == key:
                return offset
            if stored_key == 0:
                return offset if reusable is None else reusable
            if reusable is None and tat <= now:
                reusable = offset
        return reusable

    def close(self) -> None:
        """Unmap the table."""
        self._map.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
