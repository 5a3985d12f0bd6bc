"""tq reaper: re-sends lost enqueues (and, later, reclaims expired leases and settles the DLQ)."""
