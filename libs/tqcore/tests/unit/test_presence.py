"""Presence: an instance beats into the registry while it runs and leaves it when it stops."""

from __future__ import annotations

import pytest

from tqcore.presence import Presence
from tqcore.testing import InMemoryRegistry

pytestmark = pytest.mark.unit


class FailingRegistry(InMemoryRegistry):
    """A registry whose calls fail, as DynamoDB's do when it is unreachable."""

    def heartbeat(self, service: str, instance: str, ttl_s: int) -> None:
        raise ConnectionError("unreachable")

    def leave(self, service: str, instance: str) -> None:
        raise ConnectionError("unreachable")


def test_an_instance_counts_while_it_runs_and_not_once_it_has_stopped() -> None:
    registry = InMemoryRegistry()
    other = Presence(registry, "executor", "host:2", interval_s=0.01)
    presence = Presence(registry, "executor", "host:1", interval_s=0.01)
    other.start()
    presence.start()
    assert registry.alive() == {"executor": ["host:1", "host:2"]}
    presence.stop()
    # its beat thread has ended, so no late beat puts it back
    assert registry.alive() == {"executor": ["host:2"]}
    other.stop()
    assert registry.alive() == {}


def test_an_unreachable_registry_neither_stops_the_start_nor_the_stop(caplog: pytest.LogCaptureFixture) -> None:
    presence = Presence(FailingRegistry(), "reaper", "host:1", interval_s=60)
    presence.start()
    presence.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert "presence heartbeat failed: unreachable" in messages
    assert "could not leave the presence registry: unreachable" in messages
