"""The scheduler's composition root over in-memory fakes: what it wires promotes due work at its interval."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from tq_scheduler.app import build_service
from tq_scheduler.scheduler import Scheduler
from tq_scheduler.settings import SchedulerSettings
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Status
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit


def test_the_wired_scheduler_queues_a_task_once_it_is_due() -> None:
    settings = SchedulerSettings(scheduler_interval_s=0.5, scheduler_stage_s=0)
    store, queue, registry, clock = InMemoryTaskStore(), RecordingQueue(), InMemoryRegistry(["echo"]), FixedClock()
    ids = (f"t-{n}" for n in itertools.count(1))
    tasks = Tasks(store, queue, Catalog(registry), clock, lambda: next(ids))
    at = (clock.now() + timedelta(seconds=10)).isoformat()
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", "schedule": {"at": at}})
    # Given a task due in 10 s and the scheduler wired over the same adapters
    task_id = tasks.submit(cmd, Principal("alice", frozenset({"team-a"}))).task.id
    service = build_service(settings, store=store, queue=queue, registry=registry, clock=clock)
    scheduler = service.one_pass
    assert isinstance(scheduler, Scheduler)
    # When it makes a pass before and after the task's time
    scheduler.tick()
    assert store.get(task_id).status is Status.SCHEDULED
    clock.advance(10)
    scheduler.tick()
    scheduler.close()
    # Then the task was queued and sent once, and the service runs as the scheduler at its interval
    assert store.get(task_id).status is Status.QUEUED
    assert [task.id for task in queue.sent] == [task_id]
    assert (service.name, service.interval_s, service.registry) == ("scheduler", 0.5, registry)
