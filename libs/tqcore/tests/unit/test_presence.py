"""Presence: an instance beats into the registry while it runs and leaves it when it stops."""

from __future__ import annotations

import threading
import time

import pytest

from tqcore.activity import Activity
from tqcore.presence import Presence
from tqcore.testing import InMemoryRegistry

pytestmark = pytest.mark.unit


class FailingRegistry(InMemoryRegistry):
    """A registry whose calls fail, as DynamoDB's do when it is unreachable."""

    def heartbeat(self, service: str, instance: str, ttl_s: int, activity: Activity | None = None) -> None:
        raise ConnectionError("unreachable")

    def leave(self, service: str, instance: str) -> None:
        raise ConnectionError("unreachable")


class SlowRegistry(InMemoryRegistry):
    """A registry whose heartbeats, once ``slow`` is set, wait until ``release`` is set (a slow DynamoDB)."""

    def __init__(self) -> None:
        super().__init__()
        self.slow, self.beating, self.release = threading.Event(), threading.Event(), threading.Event()

    def heartbeat(self, service: str, instance: str, ttl_s: int, activity: Activity | None = None) -> None:
        if self.slow.is_set():
            self.beating.set()
            self.release.wait(5)
        super().heartbeat(service, instance, ttl_s, activity)


def test_an_instance_counts_while_it_runs_and_not_once_it_has_stopped() -> None:
    registry = InMemoryRegistry()
    other = Presence(registry, "executor", "host:2", interval_s=0.01)
    presence = Presence(registry, "executor", "host:1", interval_s=0.01)
    other.start()
    presence.start()
    assert registry.alive() == {"executor": ["host:1", "host:2"]}
    presence.stop()
    assert registry.alive() == {"executor": ["host:2"]}
    other.stop()
    assert registry.alive() == {}


def test_a_beat_under_way_when_the_instance_stops_does_not_put_it_back() -> None:
    # Given an instance whose background beat is stuck in a slow registry call
    registry = SlowRegistry()
    presence = Presence(registry, "scheduler", "host:1", interval_s=0.01)
    presence.start()
    registry.slow.set()
    assert registry.beating.wait(5)
    # When it stops while that beat is under way (the beat lands 0.2 s later)
    threading.Timer(0.2, registry.release.set).start()
    presence.stop()
    # Then it has left after the beat landed, not before
    time.sleep(0.3)
    assert registry.alive() == {}


def test_an_unreachable_registry_neither_stops_the_start_nor_the_stop(caplog: pytest.LogCaptureFixture) -> None:
    presence = Presence(FailingRegistry(), "reaper", "host:1", interval_s=60)
    presence.start()
    presence.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert "presence heartbeat failed: unreachable" in messages
    assert "could not leave the presence registry: unreachable" in messages
