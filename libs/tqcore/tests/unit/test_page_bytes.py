"""Listings bounded in bytes on the in-memory fakes: pages end at ``page_bytes``, batches stay small, the merged
dead-letter listing reads its groups lazily, and every task comes exactly once, in order."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tqcore.documents import ListedTask
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo, Status
from tqcore.domain.requests import DeadLetterQuery, TaskListQuery
from tqcore.domain.task import Task
from tqcore.listing import PAGE_BYTES, TaskListing, TaskPage
from tqcore.testing import FixedClock, InMemoryTaskQueries, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.management import DeadLetters
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
KIB = 1024


class CountingQueries(InMemoryTaskQueries):
    """The fake listings, recording each batch read and how far each group's dead letters were walked."""

    def __init__(self, store: InMemoryTaskStore) -> None:
        super().__init__(store)
        self.batches: list[list[ListedTask]] = []
        self.walked: Counter[str] = Counter()

    def listed(self, ids: Sequence[str]) -> list[ListedTask]:
        batch = super().listed(ids)
        self.batches.append(batch)
        return batch

    def dead_letter_positions(self, group: str, before: str | None = None) -> Iterator[tuple[str, str]]:
        for entry in super().dead_letter_positions(group, before):
            self.walked[group] += 1
            yield entry


class World:
    """A store and a clock; tasks ``t-0001``… (ids sort by creation, like real ids), a second apart."""

    def __init__(self) -> None:
        self.store, self.clock = InMemoryTaskStore(), FixedClock()
        self._ids = (f"t-{n:04d}" for n in itertools.count(1))

    def task(self, payload_bytes: int = 0, group: str = "team-a", type_: str = "echo") -> Task:
        cmd = SubmitTask.model_validate({"type": type_, "group": group, "retry": {"max_retries": 0}})
        task = Task.submit(
            task_id=next(self._ids),
            owner="alice",
            now=self.clock.now(),
            submitted=cmd.model_dump(mode="json"),
            **{**cmd.task_fields(), "payload": {"blob": "x" * payload_bytes}},
        )
        self.store.create(task)
        self.clock.advance(1)
        return self.store.get(task.id)

    def dead(self, group: str, payload_bytes: int = 0) -> Task:
        task = self.task(payload_bytes, group)
        task = mutate(self.store, task, lambda t: t.claim(1, "host:1", self.clock.now(), 30))
        return mutate(self.store, task, lambda t: t.fail(1, "host:1", ErrorInfo("E", "x"), self.clock.now(), jitter=0))


def pages(fetch: object, query: dict[str, object], principal: Principal) -> list[TaskPage]:
    """Every page, following ``next_cursor``."""
    found: list[TaskPage] = []
    cursor: str | None = None
    for _ in range(1000):
        model = TaskListQuery if isinstance(fetch, TaskListing) else DeadLetterQuery
        page = fetch.page(model.model_validate({**query, "cursor": cursor}), principal)  # type: ignore[attr-defined]
        found.append(page)
        cursor = page.next_cursor
        if cursor is None:
            return found
    raise AssertionError("the cursor never ends")


def page_bytes(page: TaskPage) -> int:
    return sum(len(task.doc) for task in page.items)


def test_a_page_ends_early_at_its_byte_budget_and_the_cursor_goes_on_from_there() -> None:
    # Given ten tasks of about 30 KiB each
    world = World()
    made = [world.task(30 * KIB).id for _ in range(10)]
    listing = TaskListing(InMemoryTaskQueries(world.store), page_bytes=100 * KIB)
    # When they are listed 50 at a time within 100 KiB a page
    got = pages(listing, {"group": "team-a", "limit": 50}, ALICE)
    # Then each page holds three (a fourth would pass 100 KiB), and every task comes once, newest first
    assert [len(page.items) for page in got] == [3, 3, 3, 1]
    assert all(page_bytes(page) <= 100 * KIB for page in got)
    assert [task.id for page in got for task in page.items] == made[::-1]


def test_a_task_larger_than_the_budget_still_makes_a_page_of_its_own() -> None:
    world = World()
    made = [world.task(size).id for size in (10 * KIB, 80 * KIB, 10 * KIB)]
    listing = TaskListing(InMemoryTaskQueries(world.store), page_bytes=50 * KIB)
    got = pages(listing, {"group": "team-a"}, ALICE)
    assert [[task.id for task in page.items] for page in got] == [[made[2]], [made[1]], [made[0]]]


def test_batches_are_sized_to_what_the_page_can_still_hold() -> None:
    # Given 40 tasks of 20 KiB
    world = World()
    for _ in range(40):
        world.task(20 * KIB)
    queries = CountingQueries(world.store)
    # When one page of at most 200 and 100 KiB is listed
    page = TaskListing(queries, page_bytes=100 * KIB).page(TaskListQuery(group="team-a", limit=200), ALICE)
    # Then no batch read more than the page could hold plus the one document that ends it
    assert len(page.items) == 4
    doc = len(page.items[0].doc)
    assert max(sum(len(task.doc) for task in batch) for batch in queries.batches) <= 100 * KIB + doc
    assert sum(len(batch) for batch in queries.batches) <= 6


def test_small_tasks_first_do_not_let_a_batch_of_large_ones_past_the_budget() -> None:
    # Given 40 tasks of 256 KiB, then the 11 newest of about 1 KiB (a first batch sees only small ones)
    world = World()
    for n in range(51):
        world.task(256 * KIB if n < 40 else KIB)
    queries = CountingQueries(world.store)
    # When one page of at most 200 and 4 MiB is listed
    page = TaskListing(queries).page(TaskListQuery(group="team-a", limit=200), ALICE)
    # Then no single read held more than the page budget plus one item (before: 40 large ones, 10 MiB at once)
    largest = max(len(task.doc) for batch in queries.batches for task in batch)
    assert max(sum(len(task.doc) for task in batch) for batch in queries.batches) <= PAGE_BYTES + largest
    assert len(page.items) == 11 + 15
    assert page_bytes(page) <= PAGE_BYTES


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 40 * KIB), min_size=1, max_size=25),
    limit=st.integers(1, 8),
    budget_kib=st.integers(1, 120),
    only_sleep=st.booleans(),
)
def test_pages_hold_every_matching_task_once_in_order_within_the_budget(
    sizes: list[int], limit: int, budget_kib: int, only_sleep: bool
) -> None:
    world = World()
    made = [world.task(size, type_="sleep" if n % 3 else "echo") for n, size in enumerate(sizes)]
    listing = TaskListing(InMemoryTaskQueries(world.store), page_bytes=budget_kib * KIB, scan_budget=7)
    query: dict[str, object] = {"group": "team-a", "limit": limit, **({"type": "sleep"} if only_sleep else {})}
    got = pages(listing, query, ALICE)
    want = [t.id for t in reversed(made) if not only_sleep or t.type == "sleep"]
    assert [task.id for page in got for task in page.items] == want
    for page in got:
        assert len(page.items) <= limit
        assert len(page.items) <= 1 or page_bytes(page) <= budget_kib * KIB
        if not only_sleep:  # short pages come only from the filter's scan budget
            assert page.items


def dead_world(groups: int, each: int, big_every: int = 0) -> tuple[World, list[Task]]:
    """``each`` dead letters in each of ``groups`` groups, finishing in turn across the groups (every
    ``big_every``-th with a 3 KiB payload)."""
    world = World()
    made = [
        world.dead(f"g-{n % groups}", 3 * KIB if big_every and n % big_every == 0 else 0) for n in range(groups * each)
    ]
    return world, made


def test_a_merged_dlq_walks_its_groups_lazily() -> None:
    # Given 10 groups of 30 dead letters each, and a caller in all of them
    world, _ = dead_world(10, 30)
    queries = CountingQueries(world.store)
    caller = Principal("carol", frozenset(f"g-{n}" for n in range(10)))
    dead_letters = DeadLetters(world.store, queries, RecordingQueue(), world.clock)
    # When one page of 5 is listed
    page = dead_letters.page(DeadLetterQuery(limit=5), caller)
    # Then the groups were walked about as far as the page needed (their heads, the page, one to peek), not 5
    # each, and only the page's tasks were read
    assert len(page.items) == 5
    assert 5 <= sum(queries.walked.values()) <= 5 + 10 + 1
    assert sum(len(batch) for batch in queries.batches) == 5


def test_a_merged_dlq_pages_through_every_group_once_within_the_byte_budget() -> None:
    world, made = dead_world(4, 6, big_every=5)
    caller = Principal("carol", frozenset(f"g-{n}" for n in range(4)))
    dead_letters = DeadLetters(
        world.store, InMemoryTaskQueries(world.store), RecordingQueue(), world.clock, page_bytes=8 * KIB
    )
    got = pages(dead_letters, {"limit": 7}, caller)
    assert [task.id for page in got for task in page.items] == [t.id for t in reversed(made)]
    assert all(page.items and (len(page.items) == 1 or page_bytes(page) <= 8 * KIB) for page in got)
    assert len(got) > len(made) // 7 + 1  # the budget, not the limit, ended some pages


def test_a_dead_letter_the_index_still_shows_after_a_redrive_is_not_listed() -> None:
    # Given two dead letters, one redriven, and an index that has not caught up (it still lists both)
    world, (first, second) = dead_world(1, 2)
    lagging = CountingQueries(world.store)
    positions = list(lagging.dead_letter_positions("g-0"))
    mutate(world.store, second, lambda t: t.redrive("alice", world.clock.now()))
    lagging.dead_letter_positions = lambda group, before=None: iter(positions)  # type: ignore[method-assign]
    caller = Principal("carol", frozenset({"g-0"}))
    page = DeadLetters(world.store, lagging, RecordingQueue(), world.clock).page(DeadLetterQuery(), caller)
    assert [task.id for task in page.items] == [first.id]
    assert page.items[0].status is Status.FAILED
