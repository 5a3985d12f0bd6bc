"""``Tasks.submit_many``: each item as a single submit would be, with shared writes (on the in-memory fakes)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest

from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import Forbidden, IdempotencyMismatch, UnknownTaskType, VersionConflict
from tqcore.domain.model import Status
from tqcore.domain.task import Task
from tqcore.errors import StoreUnavailable
from tqcore.ports import IdempotencyRecord
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import Catalog, Submitted, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))


def cmd(**body: Any) -> SubmitTask:
    return SubmitTask.model_validate({"type": "echo", "group": "team-a", **body})


def tasks_over(store: InMemoryTaskStore, queue: RecordingQueue) -> Tasks:
    ids = (f"t-{n}" for n in itertools.count(1))
    return Tasks(store, queue, Catalog(InMemoryRegistry(["echo"])), FixedClock(), lambda: next(ids))


class CountingStore(InMemoryTaskStore):
    """Counts ``create_many`` calls; can make the first tries of some tasks conflict, or all writes throttle."""

    def __init__(self, *, conflicts: int = 0, down_after: int | None = None) -> None:
        super().__init__()
        self.calls: list[int] = []
        self._conflicts = conflicts
        self._down_after = down_after

    def create_many(self, new: Sequence[tuple[Task, IdempotencyRecord | None]]) -> list[Exception | None]:
        self.calls.append(len(new))
        if self._conflicts:
            self._conflicts -= 1
            return [VersionConflict("raced (fake)", current=None) for _ in new]
        if self._down_after is not None:
            done = super().create_many(new[: self._down_after])
            return done + [StoreUnavailable("throttled (fake)") for _ in new[self._down_after :]]
        return super().create_many(new)


def test_every_item_is_answered_in_order_with_one_store_write_and_one_send() -> None:
    # Given a batch of valid, forbidden and unknown-type items
    store, queue = CountingStore(), RecordingQueue()
    batch = [cmd(payload={"n": 1}), cmd(group="team-b"), cmd(type="nope"), cmd(payload={"n": 2})]
    # When it is submitted
    out = tasks_over(store, queue).submit_many(batch, ALICE)
    # Then the valid ones are created and sent together, the others carry the error a single submit raises
    assert [type(o).__name__ for o in out] == ["Submitted", "Forbidden", "UnknownTaskType", "Submitted"]
    assert isinstance(out[1], Forbidden)
    assert isinstance(out[2], UnknownTaskType)
    created = [o.task for o in out if isinstance(o, Submitted)]
    assert [t.payload for t in created] == [{"n": 1}, {"n": 2}]
    assert all(t.status is Status.QUEUED and not t.pending_events for t in created)
    assert store.calls == [2]
    assert queue.batches == [2]
    assert [t.id for t in queue.sent] == [t.id for t in created]


def test_each_item_is_idempotent_on_its_own_key_also_within_one_batch() -> None:
    store, queue = CountingStore(), RecordingQueue()
    tasks = tasks_over(store, queue)
    first = tasks.submit(cmd(idempotency_key="k-1"), ALICE).task
    out = tasks.submit_many(
        [
            cmd(idempotency_key="k-1"),  # replays the single submit
            cmd(idempotency_key="k-2", payload={"a": 1}),
            cmd(idempotency_key="k-2", payload={"a": 1}),  # replays the item before it
            cmd(idempotency_key="k-2", payload={"a": 2}),  # same key, different body
        ],
        ALICE,
    )
    summary = [(o.replayed, o.task.id) if isinstance(o, Submitted) else type(o) for o in out]
    assert summary == [(True, first.id), (False, "t-3"), (True, "t-3"), IdempotencyMismatch]
    assert [t.id for t in queue.sent] == [first.id, "t-3"]  # nothing runs twice


def test_a_concurrent_writer_of_the_same_keys_is_waited_out() -> None:
    store, queue = CountingStore(conflicts=2), RecordingQueue()
    out = tasks_over(store, queue).submit_many([cmd(idempotency_key="k"), cmd()], ALICE)
    assert all(isinstance(o, Submitted) and not o.replayed for o in out)
    assert store.calls == [2, 2, 2]


def test_a_store_that_wrote_nothing_fails_the_whole_batch() -> None:
    store, queue = CountingStore(down_after=0), RecordingQueue()
    with pytest.raises(StoreUnavailable):
        tasks_over(store, queue).submit_many([cmd(), cmd(type="nope"), cmd()], ALICE)
    assert queue.sent == []


def test_a_store_that_failed_part_way_answers_the_rest_unavailable() -> None:
    store, queue = CountingStore(down_after=1), RecordingQueue()
    out = tasks_over(store, queue).submit_many([cmd(), cmd()], ALICE)
    assert isinstance(out[0], Submitted)
    assert isinstance(out[1], StoreUnavailable)
    assert [t.id for t in queue.sent] == [out[0].task.id]


def test_a_queue_that_fails_leaves_the_tasks_accepted_for_the_reaper() -> None:
    store, queue = CountingStore(), RecordingQueue()
    queue.fail_next = 1
    out = tasks_over(store, queue).submit_many([cmd(), cmd()], ALICE)
    assert all(isinstance(o, Submitted) for o in out)
    assert len(queue.sent) == 1


def test_scheduled_items_are_created_but_not_sent() -> None:
    store, queue = CountingStore(), RecordingQueue()
    out = tasks_over(store, queue).submit_many([cmd(schedule={"at": "2030-01-01T00:00:00Z"}), cmd()], ALICE)
    assert [o.task.status for o in out if isinstance(o, Submitted)] == [Status.SCHEDULED, Status.QUEUED]
    assert len(queue.sent) == 1
