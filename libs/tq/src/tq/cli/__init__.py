"""``tq``, the command line of tq (being built: its configuration comes first)."""
