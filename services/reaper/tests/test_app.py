"""The reaper's composition root over in-memory fakes: what it wires runs a pass and reports its gauges."""

from __future__ import annotations

import itertools

import pytest

from tq_reaper.app import build_service
from tq_reaper.gauges import SystemGauges
from tq_reaper.settings import ReaperSettings
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Priority
from tqcore.ports import DeadLetter, TypeInfo
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskQueries, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit


class EmptyInbox:
    """No dead letters; remembers which queues were read."""

    def __init__(self) -> None:
        self.read: list[tuple[str, Priority]] = []

    def receive(self, priority: Priority, *, hide_s: int, pool: str = "default") -> list[DeadLetter]:
        self.read.append((pool, priority))
        return []

    def discard(self, letter: DeadLetter) -> None:
        raise AssertionError("nothing to discard")


def test_the_wired_reaper_resends_a_lost_enqueue_every_interval_and_reports_its_gauges() -> None:
    settings = ReaperSettings(reaper_interval_s=2.5)
    store, queue, registry, clock = (
        InMemoryTaskStore(resend_after_s=30),
        RecordingQueue(),
        InMemoryRegistry(["echo"]),
        FixedClock(),
    )
    ids = (f"t-{n}" for n in itertools.count(1))
    registry.register_types([TypeInfo("render", "gpu")], by="host:1")
    inbox = EmptyInbox()
    # Given a task whose enqueue was lost after its submit committed
    queue.fail_next = 1
    tasks = Tasks(store, queue, Catalog(registry), clock, lambda: next(ids))
    task_id = tasks.submit(SubmitTask(type="echo", group="team-a"), Principal("alice", frozenset({"team-a"}))).task.id
    assert queue.sent == []
    # When the reaper wired over these adapters makes a pass past the re-send deadline
    service = build_service(
        settings,
        store=store,
        queue=queue,
        queries=InMemoryTaskQueries(store),
        registry=registry,
        dead_letters=inbox,
        clock=clock,
    )
    clock.advance(31)
    assert callable(service.one_pass)
    done = service.one_pass()
    # Then the task was sent again, and the service runs as the reaper at its interval with its gauges
    assert [task.id for task in queue.sent] == [task_id]
    assert done == {"reclaimed": 0, "resent": 1, "dead letters settled": 0}
    assert (service.name, service.interval_s, service.registry) == ("reaper", 2.5, registry)
    assert [type(collector) for collector in service.collectors] == [SystemGauges]
    # The dead-letter queues of every pool in use were read, and the queue gauges are per pool
    assert inbox.read == [(pool, priority) for pool in ("default", "gpu") for priority in Priority]
    (depth,) = [metric for metric in service.collectors[0].collect() if metric.name == "tq_queue_depth"]
    assert [(s.labels["pool"], s.labels["priority"], s.value) for s in depth.samples] == [
        (pool, priority.value, 1.0 if (pool, priority) == ("default", Priority.NORMAL) else 0.0)
        for pool in ("default", "gpu")
        for priority in Priority
    ]


def test_the_oldest_queued_gauge_takes_each_prioritys_oldest_task_in_any_pool() -> None:
    # Given normal-priority tasks queued 60 s ago in the default pool and 120 s ago in the gpu pool
    store, clock = InMemoryTaskStore(), FixedClock()
    registry = InMemoryRegistry(["echo"])
    registry.register_types([TypeInfo("render", "gpu")], by="host:1")
    tasks = Tasks(store, RecordingQueue(), Catalog(registry), clock, iter(["t-1", "t-2"]).__next__)
    alice = Principal("alice", frozenset({"team-a"}))
    tasks.submit(SubmitTask(type="render", group="team-a"), alice)
    clock.advance(60)
    tasks.submit(SubmitTask(type="echo", group="team-a"), alice)
    clock.advance(60)
    # When the gauges are read
    gauges = SystemGauges(RecordingQueue(), InMemoryTaskQueries(store), registry, clock)
    (oldest,) = [metric for metric in gauges.collect() if metric.name == "tq_oldest_queued_task_age_seconds"]
    # Then normal's is the gpu task's 120 s, the other priorities' 0
    assert {s.labels["priority"]: s.value for s in oldest.samples} == {"high": 0.0, "normal": 120.0, "low": 0.0}
