"""``GET /v1/tasks`` as a use case on the in-memory fakes: newest first, filters, merged groups, cursors."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import Forbidden, GroupRequired, InvalidCursor
from tqcore.domain.model import Status
from tqcore.domain.requests import TaskListQuery
from tqcore.domain.task import Task
from tqcore.listing import Arrivals, TaskListing
from tqcore.queries import encode_cursor
from tqcore.testing import FixedClock, InMemoryTaskQueries, InMemoryTaskStore

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
CAROL = Principal("carol", frozenset({"team-a", "team-b"}))
ADMIN = Principal("admin", frozenset(), admin=True)
GROUPS = ("team-a", "team-b")
TYPES = ("echo", "sleep")

Make = Callable[..., Task]


def new_store_and_maker() -> tuple[InMemoryTaskStore, Make]:
    """A store, and a maker of tasks whose ids (``t-0001``…) sort by creation, like real ids."""
    store, clock = InMemoryTaskStore(), FixedClock()
    ids = (f"t-{n:04d}" for n in itertools.count(1))

    def make(group: str = "team-a", type_: str = "echo", *, cancelled: bool = False, name: str | None = None) -> Task:
        cmd = SubmitTask.model_validate({"type": type_, "group": group, "name": name})
        task = Task.submit(
            task_id=next(ids),
            owner="alice",
            now=clock.now(),
            submitted=cmd.model_dump(mode="json"),
            **cmd.task_fields(),
        )
        store.create(task)
        if cancelled:
            current = store.get(task.id)
            current.request_cancel("alice", clock.now())
            store.commit(current)
        return store.get(task.id)

    return store, make


def every_page(listing: TaskListing, principal: Principal, **query: object) -> tuple[list[str], int]:
    """The ids of every page, in order, and how many pages it took."""
    ids: list[str] = []
    cursor: str | None = None
    for pages in itertools.count(1):
        page = listing.page(TaskListQuery.model_validate({**query, "cursor": cursor}), principal)
        ids += [task.id for task in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return ids, pages
        assert pages < 1000, "the cursor never ends"
    raise AssertionError("unreachable")


def test_a_groups_tasks_are_listed_newest_first_in_pages() -> None:
    store, make = new_store_and_maker()
    made = [make().id for _ in range(7)]
    make("team-b")
    listing = TaskListing(InMemoryTaskQueries(store))
    first = listing.page(TaskListQuery(group="team-a", limit=3), ALICE)
    assert [t.id for t in first.items] == made[::-1][:3]
    assert first.next_cursor is not None
    ids, pages = every_page(listing, ALICE, group="team-a", limit=3)
    assert (ids, pages) == (made[::-1], 3)


def test_a_page_that_ends_exactly_at_the_last_task_has_no_next_cursor() -> None:
    store, make = new_store_and_maker()
    for _ in range(4):
        make()
    page = TaskListing(InMemoryTaskQueries(store)).page(TaskListQuery(group="team-a", limit=4), ALICE)
    assert (len(page.items), page.next_cursor) == (4, None)


def test_status_and_type_filters_apply_together() -> None:
    store, make = new_store_and_maker()
    want = [make(type_="sleep", cancelled=True).id, make(type_="sleep", cancelled=True).id]
    make(type_="echo", cancelled=True)
    make(type_="sleep")
    listing = TaskListing(InMemoryTaskQueries(store))
    ids, _ = every_page(listing, ALICE, group="team-a", status="cancelled", type="sleep", limit=1)
    assert ids == want[::-1]


def test_without_a_group_a_user_sees_all_their_groups_merged_newest_first() -> None:
    store, make = new_store_and_maker()
    made = [make(group).id for group in ("team-a", "team-b", "team-a", "team-b", "team-c")]
    listing = TaskListing(InMemoryTaskQueries(store))
    assert every_page(listing, CAROL, limit=2)[0] == made[:4][::-1]
    assert every_page(listing, ALICE, limit=2)[0] == [made[2], made[0]]


def test_another_groups_listing_is_forbidden_and_an_admin_names_any_group() -> None:
    store, make = new_store_and_maker()
    made = make("team-b").id
    listing = TaskListing(InMemoryTaskQueries(store))
    with pytest.raises(Forbidden):
        listing.page(TaskListQuery(group="team-b"), ALICE)
    with pytest.raises(GroupRequired):  # a listing that cannot know every group
        listing.page(TaskListQuery(), ADMIN)
    assert [t.id for t in listing.page(TaskListQuery(group="team-b"), ADMIN).items] == [made]
    mine = make("team-a").id
    everything = TaskListing(InMemoryTaskQueries(store), every_group=lambda: ["team-a", "team-b"])
    assert [t.id for t in everything.page(TaskListQuery(), ADMIN).items] == [mine, made]


def test_the_newest_id_is_the_newest_of_the_listed_groups_whatever_the_filters() -> None:
    # A live table's cheap look for arrivals: the listing's groups (and their access check), no task read
    store, make = new_store_and_maker()
    listing = TaskListing(InMemoryTaskQueries(store))
    assert listing.newest_id(TaskListQuery(), CAROL) is None
    older, newer = make("team-a").id, make("team-b").id
    assert listing.newest_id(TaskListQuery(), CAROL) == newer
    assert listing.newest_id(TaskListQuery(status=Status.RUNNING, group="team-a"), CAROL) == older
    assert listing.newest_id(TaskListQuery(), ALICE) == older
    with pytest.raises(Forbidden):
        listing.newest_id(TaskListQuery(group="team-b"), ALICE)
    assert set(listing.stamps([older, newer, "t-9999"])) == {older, newer}


def test_arrivals_are_the_tasks_newer_than_the_last_seen_and_match_only_through_the_filters() -> None:
    store, make = new_store_and_maker()
    listing = TaskListing(InMemoryTaskQueries(store))
    seen = make("team-a").id
    assert listing.arrivals(TaskListQuery(), CAROL, seen) == Arrivals(seen, matching=False)
    sleepy, other = make("team-b", "sleep").id, make("team-c").id
    # Unfiltered, any new task of the caller's groups is a match (another group's is not even looked at)
    assert listing.arrivals(TaskListQuery(), CAROL, seen) == Arrivals(sleepy, matching=True)
    assert listing.arrivals(TaskListQuery(), ALICE, seen) == Arrivals(seen, matching=False)
    # Filtered, the new tasks are read and matched: type echo is not the new sleep task
    assert listing.arrivals(TaskListQuery(type="echo"), CAROL, seen) == Arrivals(sleepy, matching=False)
    assert listing.arrivals(TaskListQuery(type="sleep"), CAROL, seen) == Arrivals(sleepy, matching=True)
    assert listing.arrivals(TaskListQuery(type="echo"), CAROL, None) == Arrivals(sleepy, matching=True)
    # More new tasks than the cap count as a match without a read
    many = [make("team-a", "sleep").id for _ in range(3)]
    assert listing.arrivals(TaskListQuery(type="echo"), CAROL, sleepy, cap=2).matching
    assert other not in many


@pytest.mark.parametrize("cursor", ["garbage!", encode_cursor("dlq", "t-0001"), encode_cursor("tasks", "a b")])
def test_a_cursor_not_from_this_listing_is_refused(cursor: str) -> None:
    store, _ = new_store_and_maker()
    with pytest.raises(InvalidCursor):
        TaskListing(InMemoryTaskQueries(store)).page(TaskListQuery(group="team-a", cursor=cursor), ALICE)


def test_a_rare_filter_returns_short_pages_within_the_scan_budget_and_still_finds_everything() -> None:
    store, make = new_store_and_maker()
    rare = make(type_="sleep").id
    for _ in range(25):
        make()
    listing = TaskListing(InMemoryTaskQueries(store), scan_budget=10)
    first = listing.page(TaskListQuery(group="team-a", type="sleep"), ALICE)
    assert first.items == []
    assert first.next_cursor is not None
    ids, pages = every_page(listing, ALICE, group="team-a", type="sleep")
    assert (ids, pages) == ([rare], 3)


def test_the_name_filter_keeps_names_containing_it_ignoring_case_and_pages_like_the_others() -> None:
    store, make = new_store_and_maker()
    report = make(name="Nightly-Report").id
    make(name="hourly sync")
    make()  # no name
    other = make(name="nightly-cleanup", type_="sleep").id
    listing = TaskListing(InMemoryTaskQueries(store), scan_budget=2)
    ids, pages = every_page(listing, ALICE, group="team-a", name="NIGHTLY")
    assert ids == [other, report]
    assert pages == 2  # a filtered page reads at most the scan budget (2 of the 4), and pages on past it
    assert every_page(listing, ALICE, group="team-a", name="nightly", type="echo")[0] == [report]
    assert every_page(listing, ALICE, group="team-a", name="weekly")[0] == []


@settings(max_examples=60, deadline=None)
@given(
    tasks=st.lists(st.tuples(st.sampled_from(GROUPS), st.sampled_from(TYPES), st.booleans()), max_size=30),
    limit=st.integers(1, 7),
    budget=st.integers(1, 12),
    status=st.sampled_from([None, Status.QUEUED, Status.CANCELLED]),
    type_=st.sampled_from([None, *TYPES]),
    group=st.sampled_from([None, *GROUPS]),
)
def test_paging_yields_exactly_the_matching_tasks_once_newest_first(
    tasks: list[tuple[str, str, bool]],
    limit: int,
    budget: int,
    status: Status | None,
    type_: str | None,
    group: str | None,
) -> None:
    store, make = new_store_and_maker()
    made = [make(g, t, cancelled=c) for g, t, c in tasks]
    expected = [
        task.id
        for task in reversed(made)
        if (group is None or task.group == group)
        and (status is None or task.status is status)
        and (type_ is None or task.type == type_)
    ]
    query = {"group": group, "status": status, "type": type_, "limit": limit}
    ids, _ = every_page(TaskListing(InMemoryTaskQueries(store), scan_budget=budget), CAROL, **query)
    assert ids == expected
