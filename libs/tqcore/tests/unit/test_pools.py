"""Executor pools and the type catalog's records: queue names, declared defaults, payload schemas, routing."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from tqcore.bootstrap import BootstrapSettings
from tqcore.domain.access import Principal
from tqcore.domain.codec import task_from_dict, task_to_dict
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import InvalidPayload, UnknownTaskType
from tqcore.domain.model import Priority
from tqcore.pools import pools_of
from tqcore.ports import DeadLetter, TypeInfo
from tqcore.settings import CoreSettings
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.recovery import settle_dead_letters
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
SCHEMA = {
    "type": "object",
    "properties": {"width": {"type": "integer", "minimum": 1}, "size": {"type": "object", "required": ["h"]}},
    "required": ["width"],
}
THUMB = TypeInfo(
    "thumb", "media", defaults={"retry": {"max_retries": 1}, "timeout_s": 77, "priority": "high"}, payload_schema=SCHEMA
)


def submit(**body: Any) -> SubmitTask:
    return SubmitTask.model_validate({"type": "thumb", "group": "team-a", **body})


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def tasks(queue: RecordingQueue) -> Tasks:
    registry = InMemoryRegistry(["echo"])
    registry.register_types([THUMB], by="host:1")
    ids = (f"t-{n}" for n in itertools.count(1))
    return Tasks(InMemoryTaskStore(), queue, Catalog(registry), FixedClock(), lambda: next(ids))


def test_the_default_pool_keeps_its_queue_names_and_another_pool_names_its_own() -> None:
    settings = CoreSettings.model_construct(prefix="tq")
    assert (settings.queue_name(Priority.HIGH), settings.dlq_name(Priority.LOW)) == ("tq-high.fifo", "tq-low-dlq.fifo")
    assert settings.queue_name(Priority.HIGH, "gpu") == "tq-gpu-high.fifo"
    assert settings.dlq_name(Priority.NORMAL, "gpu") == "tq-gpu-normal-dlq.fifo"


def test_bootstrap_reads_the_pools_to_create_and_refuses_a_bad_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQ_POOLS", "gpu, batch-2")
    assert BootstrapSettings().pools == ["gpu", "batch-2"]
    monkeypatch.setenv("TQ_POOLS", "GPU")
    with pytest.raises(ValidationError):
        BootstrapSettings()


def test_the_pools_in_use_are_the_default_pool_then_the_others_sorted() -> None:
    assert pools_of([TypeInfo("a", "zeta"), TypeInfo("b"), TypeInfo("c", "alpha"), TypeInfo("d", "zeta")]) == [
        "default",
        "alpha",
        "zeta",
    ]
    assert pools_of([]) == ["default"]


def test_declared_defaults_fill_only_what_a_submit_leaves_out() -> None:
    defaults = THUMB.defaults
    filled = submit().with_defaults(defaults)
    assert (filled.retry.max_retries, filled.timeout_s, filled.priority) == (1, 77, Priority.HIGH)
    own = submit(timeout_s=5, priority="low", retry={"backoff_base_s": 1}).with_defaults(defaults)
    assert (own.retry.max_retries, own.retry.backoff_base_s, own.timeout_s, own.priority) == (1, 1, 5, Priority.LOW)
    assert submit(retry={"max_retries": 7}).with_defaults(defaults).retry.max_retries == 7
    assert submit().with_defaults({"timeout_s": 10**9}).timeout_s == 300  # a default out of bounds is ignored


def test_a_submit_takes_its_types_pool_and_defaults_and_is_sent_to_that_pool(
    tasks: Tasks, queue: RecordingQueue
) -> None:
    submitted = tasks.submit(submit(payload={"width": 3}), ALICE)
    task = submitted.task
    assert (task.pool, task.retry.max_retries, task.timeout_s, task.priority) == ("media", 1, 77, Priority.HIGH)
    assert [(t.id, t.pool) for t in queue.sent] == [(task.id, "media")]
    assert task_from_dict(task_to_dict(task)).pool == "media"
    assert tasks.submit(SubmitTask(type="echo", group="team-a"), ALICE).task.pool == "default"


def test_a_payload_that_fails_the_types_schema_is_refused_with_each_location(
    tasks: Tasks, queue: RecordingQueue
) -> None:
    with pytest.raises(InvalidPayload) as refused:
        tasks.submit(submit(payload={"width": 0, "size": {}}), ALICE)
    assert sorted(e["loc"] for e in refused.value.errors) == [["payload", "size", "h"], ["payload", "width"]]
    with pytest.raises(InvalidPayload) as missing:
        tasks.submit(submit(payload={}), ALICE)
    assert [e["loc"] for e in missing.value.errors] == [["payload", "width"]]
    assert queue.sent == []


def test_a_type_no_pool_serves_is_unknown(tasks: Tasks) -> None:
    with pytest.raises(UnknownTaskType):
        tasks.submit(submit(type="nobody"), ALICE)


def test_a_schema_that_does_not_compile_checks_nothing_at_submit() -> None:
    registry = InMemoryRegistry()
    registry.register_types([TypeInfo("odd", payload_schema={"type": 12})], by="host:1")
    assert Catalog(registry).require("odd", {"any": "thing"}).name == "odd"


def test_the_dead_letter_queues_of_every_pool_are_settled() -> None:
    asked: list[tuple[str, Priority]] = []

    class Inbox:
        def receive(self, priority: Priority, *, hide_s: int, pool: str = "default") -> list[DeadLetter]:
            asked.append((pool, priority))
            return []

        def discard(self, letter: DeadLetter) -> None:
            raise AssertionError("nothing to discard")

    settle_dead_letters(InMemoryTaskStore(), RecordingQueue(), Inbox(), FixedClock(), pools=["default", "media"])
    assert asked == [(pool, priority) for pool in ("default", "media") for priority in Priority]


def test_a_run_spawned_beside_a_repeating_task_keeps_its_pool(tasks: Tasks) -> None:
    parent = tasks.submit(submit(payload={"width": 1}, schedule={"every_s": 60}, overlap="allow"), ALICE).task
    child = parent.spawn_run(parent.created_at, parent.created_at)
    assert (parent.pool, child.pool) == ("media", "media")
