"""Executor pools: which pools' queues exist and are read, from the task-type catalog."""

from __future__ import annotations

from collections.abc import Iterable

from tqcore.ports import Registry, TypeInfo
from tqcore.settings import DEFAULT_POOL


def pools_of(types: Iterable[TypeInfo]) -> list[str]:
    """The default pool, then every other pool some type belongs to, sorted."""
    return [DEFAULT_POOL, *sorted({info.pool for info in types} - {DEFAULT_POOL})]


def pools_in_use(registry: Registry) -> list[str]:
    """:func:`pools_of` the registry's catalog (one query)."""
    return pools_of(registry.task_types().values())
