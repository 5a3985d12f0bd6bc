"""Who may do what: principals and per-group access, pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user name, the security groups they belong to, and admin rights."""

    name: str
    groups: frozenset[str]
    admin: bool = False

    def can_see(self, group: str) -> bool:
        """May read and manage tasks of ``group``."""
        return self.admin or group in self.groups

    def can_submit(self, group: str) -> bool:
        """May submit tasks into ``group``."""
        return self.can_see(group)
