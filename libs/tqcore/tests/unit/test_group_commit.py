"""Group commit: concurrent requests share flushes, each caller gets its own answer, nobody waits for ever."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tqcore.adapters.dynamodb import batching
from tqcore.adapters.dynamodb.batching import Group
from tqcore.adapters.group_commit import GroupCommit, Pending

pytestmark = pytest.mark.unit


class Recorder:
    """A send that answers each request with its double, refuses negative ones, and can be held."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()
        self.commit: GroupCommit[int] | None = None

    def send(self, batch: list[Pending[int]]) -> None:
        self.started.set()
        self.release.wait(5)
        self.batches.append([p.request for p in batch])
        assert self.commit is not None
        for pending in batch:
            if pending.request < 0:
                self.commit.settle(pending, error=ValueError(pending.request))
            else:
                self.commit.settle(pending, result=pending.request * 2)


def take_up_to(n: int) -> Any:
    def select(queue: list[Pending[int]]) -> list[Pending[int]]:
        batch = queue[:n]
        del queue[:n]
        return batch

    return select


def made(max_inflight: int, batch: int = 10) -> tuple[GroupCommit[int], Recorder]:
    recorder = Recorder()
    recorder.commit = GroupCommit(recorder.send, take_up_to(batch), max_inflight=max_inflight)
    return recorder.commit, recorder


def test_a_lone_request_is_sent_at_once_alone() -> None:
    commit, recorder = made(max_inflight=2)
    assert commit.submit(21) == 42
    assert recorder.batches == [[21]]


def test_requests_arriving_during_a_flush_go_together_in_the_next_one() -> None:
    # Given one flush slot, held by a first request
    commit, recorder = made(max_inflight=1)
    recorder.release.clear()
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(commit.submit, 0)
        assert recorder.started.wait(5)
        # When seven more arrive meanwhile
        rest = [pool.submit(commit.submit, n) for n in range(1, 8)]
        while len(commit._queue) < 7:
            threading.Event().wait(0.001)
        recorder.release.set()
        # Then each gets its own answer, and they went in one flush after the first
        assert [f.result(5) for f in [first, *rest]] == [n * 2 for n in range(8)]
    assert recorder.batches == [[0], [1, 2, 3, 4, 5, 6, 7]]


def test_a_queue_longer_than_a_batch_is_flushed_in_several_and_every_caller_answered() -> None:
    commit, recorder = made(max_inflight=2, batch=3)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(commit.submit, range(200)))
    assert answers == [n * 2 for n in range(200)]
    assert sorted(n for batch in recorder.batches for n in batch) == list(range(200))
    assert all(len(batch) <= 3 for batch in recorder.batches)
    assert commit._inflight == 0


def test_an_error_reaches_only_its_own_caller() -> None:
    commit, recorder = made(max_inflight=1)
    recorder.release.clear()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(commit.submit, 1)
        assert recorder.started.wait(5)
        bad, good = pool.submit(commit.submit, -1), pool.submit(commit.submit, 2)
        while len(commit._queue) < 2:
            threading.Event().wait(0.001)
        recorder.release.set()
        assert (first.result(5), good.result(5)) == (2, 4)
        with pytest.raises(ValueError, match="-1"):
            bad.result(5)


def test_a_send_that_breaks_fails_its_callers_instead_of_leaving_them_waiting() -> None:
    def broken(batch: list[Pending[int]]) -> None:
        raise RuntimeError("bug")

    commit: GroupCommit[int] = GroupCommit(broken, take_up_to(10), max_inflight=1)
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(commit.submit, n) for n in range(20)]
        for future in futures:
            with pytest.raises(RuntimeError):
                future.result(5)
    assert commit._inflight == 0


def put(pk: str, size: int = 10) -> dict[str, Any]:
    return {"Put": {"TableName": "t", "Item": {"PK": {"S": pk}, "SK": {"S": "TASK"}, "doc": {"S": "x" * size}}}}


def update(pk: str) -> dict[str, Any]:
    return {
        "Update": {"TableName": "t", "Key": {"PK": {"S": pk}, "SK": {"S": "TASK"}}, "UpdateExpression": "SET a = :a"}
    }


def queued(*groups: list[dict[str, Any]]) -> list[Pending[Group]]:
    return [Pending(Group.of(items)) for items in groups]


def names(batch: list[Pending[Group]]) -> list[str]:
    """The first key (PK) each group writes."""
    return [min(key[1] for key in p.request.keys) for p in batch]


def test_a_batch_never_writes_one_key_twice_the_later_group_waits() -> None:
    queue = queued([put("a")], [update("a")], [put("b")], [update("b"), put("c")])
    batch = batching._select(queue)
    assert names(batch) == ["a", "b"]
    assert names(queue) == ["a", "b"]
    assert names(batching._select(queue)) == ["a", "b"]


def test_a_batch_holds_at_most_a_hundred_items_and_its_bytes_limit() -> None:
    queue = queued(*[[put(f"k{n}")] for n in range(150)])
    assert len(batching._select(queue)) == 100
    assert len(batching._select(queue)) == 50
    big = queued(*[[put(f"k{n}", size=390_000)] for n in range(12)])
    first = batching._select(big)
    assert sum(p.request.size for p in first) <= batching.MAX_BYTES
    assert len(first) == 8
    # A group larger than the limit alone still goes (DynamoDB judges it)
    assert len(batching._select(queued([put("huge", size=5_000_000)]))) == 1
