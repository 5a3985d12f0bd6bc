"""The console's live parts over in-memory fakes: the task page's and the tasks table's ``changed`` streams (what
wakes them, what does not, their seen tokens, isolation, the stream slots they hold) and how often the table looks."""

from __future__ import annotations

import html
import itertools
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import falcon.testing
import pytest

from tq_gateway import watch as watch_module
from tq_gateway.console.live import (
    TableLook,
    table_live_url,
    table_query,
    table_seen,
    task_live_url,
    task_seen,
)
from tq_gateway.settings import GatewaySettings
from tq_gateway.testing import Browser, client_over_fakes
from tqcore.domain.access import Principal
from tqcore.domain.model import Progress
from tqcore.domain.requests import TaskListQuery
from tqcore.domain.task import Task
from tqcore.listing import TaskListing
from tqcore.queries import TaskStamp
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskQueries, InMemoryTaskStore
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

WORKER = "host-a:1"
#: Streams that end after 1.2 s (each test reads a whole stream), a watch looking every 50 ms.
FAST = {"watch_interval_s": 0.05, "stream_ping_s": 0.5, "stream_max_s": 1.2, "console_table_check_s": 0.5}
ALICE = Principal("alice", frozenset({"team-a"}))


class Console:
    """A signed-in console over fakes, and a way to add and move tasks behind its back."""

    def __init__(self, token: str = "dev-alice", **settings: Any) -> None:
        self.store = InMemoryTaskStore()
        self.clock = FixedClock()
        numbers = itertools.count(1)
        self.client = client_over_fakes(
            GatewaySettings(**{**FAST, **settings}),
            store=self.store,
            registry=InMemoryRegistry(["echo", "sleep"]),
            clock=self.clock,
            new_id=lambda: f"t-{next(numbers):04d}",  # ids that sort as they are made, as real ones do
        )
        self.browser = Browser(self.client)
        self.browser.sign_in(token)

    def submit(self, group: str = "team-a", type_: str = "echo", token: str = "dev-alice") -> Task:
        answer = self.client.simulate_post(
            "/v1/tasks", json={"type": type_, "group": group}, headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status_code == 201, answer.text
        return self.store.get(answer.json["id"])

    def change(self, task_id: str, change: Callable[[Task], None]) -> Task:
        self.clock.advance(1)
        return mutate(self.store, self.store.get(task_id), change)

    def claim(self, task_id: str) -> Task:
        return self.change(task_id, lambda t: t.claim(1, WORKER, self.clock.now(), 30))

    def succeed(self, task_id: str) -> Task:
        return self.change(task_id, lambda t: t.succeed(1, WORKER, {"ok": True}, self.clock.now()))

    def report(self, task: Task, fraction: float) -> None:
        self.clock.advance(0.01)
        assert task.claim_seq is not None
        assert self.store.report_progress(task.id, task.claim_seq, Progress(fraction, None, self.clock.now()))

    def get(self, path: str, **params: str) -> falcon.testing.Result:
        return self.browser.get(path, **params)

    def follow(self, url: str) -> falcon.testing.Result:
        """GET a page's live URL (its query string as it is) to the stream's end."""
        path, _, query = url.partition("?")
        return self.client.simulate_get(path, query_string=query, cookies=self.browser.cookies)


def later(delay_s: float, action: Callable[[], object]) -> None:
    """Run ``action`` in a thread after ``delay_s`` (while the test reads a stream)."""
    threading.Timer(delay_s, action).start()


def changes(answer: falcon.testing.Result) -> list[str]:
    """The seen tokens of a stream's ``changed`` messages, in order (each message's id and data agree)."""
    tokens = []
    for block in answer.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if fields.get("event") == "changed":
            assert fields["data"] == f'{{"seen":"{fields["id"]}"}}'
            tokens.append(fields["id"])
    return tokens


def assert_stream(answer: falcon.testing.Result) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert answer.headers["cache-control"] == "no-cache"
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert answer.text.startswith("retry: 1000\n\n")


# ------------------------------------------------------------------------------------------------ the task page
def test_a_task_page_stream_tells_each_move_of_the_task_with_its_new_seen_token() -> None:
    # Given alice's queued task, its page's seen token, and the task claimed 0.2 s into the stream
    console = Console(stream_max_s=2)
    task = console.submit()
    later(0.2, lambda: console.claim(task.id))
    # When her task page's stream runs
    answer = console.get(f"/ui/tasks/{task.id}/live", seen=task_seen(task))
    # Then it told one change, to the claimed task's token, and kept the connection open with pings till its end
    assert_stream(answer)
    assert changes(answer) == [task_seen(console.store.get(task.id))]
    assert ": ping" in answer.text


def test_a_task_page_rendered_before_a_move_is_told_at_once_and_a_current_one_is_not() -> None:
    console = Console(stream_max_s=0.3)
    task = console.submit()
    seen_before = task_seen(task)
    moved = console.claim(task.id)
    assert changes(console.get(f"/ui/tasks/{task.id}/live", seen=seen_before)) == [task_seen(moved)]
    assert changes(console.get(f"/ui/tasks/{task.id}/live", seen=task_seen(moved))) == []
    # Without a token, the stream starts from the task as it reads it
    assert changes(console.get(f"/ui/tasks/{task.id}/live")) == []
    assert task_live_url(moved) == f"/ui/tasks/{task.id}/live?seen={moved.version}.0"


def test_progress_reports_are_changes_but_told_at_most_once_a_second() -> None:
    # Given a running task reporting progress every 50 ms for a second
    console = Console(stream_max_s=1.5)
    task = console.claim(console.submit().id)

    def report_often() -> None:
        for n in range(20):
            console.report(task, n / 20)
            time.sleep(0.05)

    later(0.1, report_often)
    answer = console.get(f"/ui/tasks/{task.id}/live", seen=task_seen(task))
    # Then the page hears of it, but at most twice in the stream's 1.5 s, and last of the newest report it saw
    told = changes(answer)
    assert 1 <= len(told) <= 2
    assert len(set(told)) == len(told)
    assert all(token.split(".")[0] == str(task.version) for token in told)


def test_a_busy_tasks_page_stream_still_ends_at_its_lifetime() -> None:
    # Given a task reporting progress every 50 ms for 3 s, and streams that last 1 s
    console = Console(stream_max_s=1)
    task = console.claim(console.submit().id)
    reporting = threading.Thread(target=lambda: [(console.report(task, n / 60), time.sleep(0.05)) for n in range(60)])
    reporting.start()
    started = time.monotonic()
    # Then its page's stream ends after about 1 s (the gap between changes never puts the end off)
    assert changes(console.get(f"/ui/tasks/{task.id}/live", seen=task_seen(task)))
    assert time.monotonic() - started < 2.2
    reporting.join()


def test_a_task_outside_the_callers_groups_is_a_404_page_before_any_stream_and_takes_no_slot() -> None:
    # Given bob signed in on a replica with a single stream slot, and alice's task
    console = Console("dev-bob", gateway_streams=1, stream_max_s=0.2)
    alices = console.submit()
    # When bob opens her task's live URL (or one of no task), then it is the 404 page, no stream
    for path in (f"/ui/tasks/{alices.id}/live", "/ui/tasks/no-such-task/live"):
        answer = console.get(path)
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
        assert "<h1>404 Not Found</h1>" in answer.text
    # And the slot is still free: his own task's stream gets it
    assert_stream(console.get(f"/ui/tasks/{console.submit('team-b', token='dev-bob').id}/live"))


def test_a_seen_token_that_is_none_of_the_pages_is_a_400_page() -> None:
    console = Console()
    task = console.submit()
    for seen in ("1", "x.2", "1.2.3", "<script>", "9" * 40 + ".1"):
        answer = console.get(f"/ui/tasks/{task.id}/live", seen=seen)
        assert answer.status_code == 400, seen
        assert "<script>" not in answer.text
    assert console.get("/ui/tasks/live", seen="not-a-digest").status_code == 400


def test_without_a_session_a_live_url_is_a_401_and_opens_nothing() -> None:
    # An EventSource would follow a redirect to the sign-in page and retry it forever: a 401 stops it, and
    # console.js then reloads the page (which goes to sign in)
    console = Console()
    task = console.submit()
    stranger = Browser(console.client)
    for path in (f"/ui/tasks/{task.id}/live", "/ui/tasks/live"):
        answer = stranger.get(path)
        assert answer.status_code == 401
        assert "location" not in answer.headers
        assert "event:" not in answer.text


def test_a_live_stream_holds_a_stream_slot_while_open_and_frees_it_when_it_ends() -> None:
    # Given a replica with one stream slot, held by alice's open table stream
    console = Console(gateway_streams=1, stream_max_s=0.6)
    task = console.submit()
    holder = threading.Thread(target=lambda: console.get("/ui/tasks/live"))
    holder.start()
    time.sleep(0.2)
    # When she opens a task page's stream (or an API stream) meanwhile, then it is refused at once: a 503 page
    refused = console.get(f"/ui/tasks/{task.id}/live")
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert "<h1>503" in refused.text
    api = console.client.simulate_get(f"/v1/tasks/{task.id}/stream", headers={"Authorization": "Bearer dev-alice"})
    assert api.status_code == 503
    # And once the table's stream ended, the slot is free again
    holder.join(5)
    assert_stream(console.get(f"/ui/tasks/{task.id}/live"))


def test_the_worker_stopping_ends_the_live_streams_at_once() -> None:
    for path in ("/ui/tasks/t-0001/live", "/ui/tasks/live"):
        # Given an open live stream of a quiet page (alice's task, her table)
        console = Console(stream_max_s=30, stream_ping_s=20)
        console.submit()
        stop = threading.Timer(0.3, watch_module.close_all)  # what the worker does on SIGTERM
        stop.start()
        started = time.monotonic()
        # Then it ends when the worker stops, long before its lifetime
        assert_stream(console.get(path))
        assert 0.25 <= time.monotonic() - started < 3
        stop.join()


# ------------------------------------------------------------------------------------------------ the tasks table
def test_a_table_stream_tells_a_new_task_and_a_row_that_moves() -> None:
    # Given alice's table with one task, a second submitted 0.3 s into the stream and the first claimed at 1.2 s
    console = Console(stream_max_s=2.5)
    first = console.submit()
    page = TaskListing(InMemoryTaskQueries(console.store)).page(TaskListQuery(limit=50), ALICE)
    later(0.3, console.submit)
    later(1.2, lambda: console.claim(first.id))
    # When her table's stream runs
    answer = console.get("/ui/tasks/live", seen=table_seen(page))
    # Then it told both changes, each as the seen token of the table as it then was
    assert_stream(answer)
    now = TaskListing(InMemoryTaskQueries(console.store)).page(TaskListQuery(limit=50), ALICE)
    told = changes(answer)
    assert len(told) == 2
    assert told[-1] == table_seen(now)


def test_a_quiet_table_and_other_groups_moving_tell_nothing() -> None:
    # Given bob's table of his group, and alice's tasks arriving and moving meanwhile
    console = Console("dev-bob", stream_max_s=1.2)
    console.submit("team-b", token="dev-bob")
    alices = console.submit()
    later(0.2, lambda: console.submit())
    later(0.4, lambda: console.claim(alices.id))
    # When his table's stream runs, then it tells him nothing (only pings)
    answer = console.get("/ui/tasks/live")
    assert_stream(answer)
    assert changes(answer) == []
    assert ": ping" in answer.text
    # And he cannot follow her group's table: refused before any stream, as the listing refuses him
    refused = console.get("/ui/tasks/live", group="team-a")
    assert refused.status_code == 403
    assert "event:" not in refused.text


def test_a_filtered_table_tells_an_older_task_that_entered_its_filter() -> None:
    # Given alice's table of running tasks (none yet) over two queued tasks, the older one claimed in the stream
    console = Console(stream_max_s=2.2, console_table_relist_s=1)
    older, _ = console.submit(), console.submit()
    later(0.3, lambda: console.claim(older.id))
    # When the table's stream runs, then the task that started running is told (by the filtered page's re-read)
    answer = console.get("/ui/tasks/live", status="running")
    now = TaskListing(InMemoryTaskQueries(console.store)).page(TaskListQuery(status="running"), ALICE)
    assert [item.id for item in now.items] == [older.id]
    assert changes(answer) == [table_seen(now)]


def test_a_later_page_does_not_look_for_arrivals() -> None:
    console = Console(stream_max_s=1.2)
    tasks = [console.submit() for _ in range(3)]
    listing = TaskListing(InMemoryTaskQueries(console.store))
    cursor = listing.page(TaskListQuery(limit=1), ALICE).next_cursor
    assert cursor is not None
    later(0.2, console.submit)
    answer = console.get("/ui/tasks/live", cursor=cursor)
    assert changes(answer) == []
    assert tasks


class CountingQueries(InMemoryTaskQueries):
    """The fake's queries, counting what the table's look reads."""

    def __init__(self, store: InMemoryTaskStore) -> None:
        super().__init__(store)
        self.reads: list[str] = []

    def newest_ids(self, group: str, before: str | None = None) -> Any:
        self.reads.append(f"newest {group}")
        return super().newest_ids(group, before)

    def listed(self, ids: Sequence[str]) -> Any:
        self.reads.append(f"listed {len(ids)}")
        return super().listed(ids)

    def stamps(self, ids: Sequence[str]) -> dict[str, TaskStamp]:
        self.reads.append(f"stamps {len(ids)}")
        return super().stamps(ids)


def test_a_quiet_unfiltered_look_reads_the_rows_stamps_and_each_groups_newest_id_only() -> None:
    # Given carol's table (two groups) of three tasks
    console = Console()
    for group in ("team-a", "team-b", "team-a"):
        console.submit(group, token="dev-carol")
    queries = CountingQueries(console.store)
    carol = Principal("carol", frozenset({"team-a", "team-b"}))
    look = TableLook(TaskListing(queries), table_query_of(), carol, 60)
    seen = look.seen
    queries.reads.clear()
    # When it looks with nothing moved, then it read one batch of stamps and one page of ids per group, no task
    look.again()
    assert queries.reads == ["stamps 3", "newest team-a", "newest team-b"]
    assert look.seen == seen
    # And when one of them moved, it reads the page again and its token changes
    console.claim(look.rows[0].id)
    queries.reads.clear()
    look.again()
    assert "listed 3" in queries.reads
    assert look.seen != seen


def test_a_filtered_look_reads_only_the_new_tasks_and_the_page_only_when_one_passes_the_filter() -> None:
    # Given alice's table of sleep tasks, with one
    console = Console()
    console.submit(type_="sleep")
    queries = CountingQueries(console.store)
    look = TableLook(TaskListing(queries), table_query_of(type="sleep"), ALICE, 60)
    seen = look.seen
    # When two echo tasks arrive, then a look reads their snapshots only, once, and the page is what it was
    console.submit(), console.submit()
    queries.reads.clear()
    look.again()
    assert queries.reads == ["stamps 1", "newest team-a", "listed 2"]
    queries.reads.clear()
    look.again()
    assert queries.reads == ["stamps 1", "newest team-a"]
    assert look.seen == seen
    # And when a sleep task arrives, the page is read again and differs
    console.submit(type_="sleep")
    look.again()
    assert look.seen != seen


def test_a_look_that_cannot_read_keeps_the_stream_and_tries_again() -> None:
    console = Console()
    console.submit()

    class Down(InMemoryTaskQueries):
        down = False

        def stamps(self, ids: Sequence[str]) -> dict[str, TaskStamp]:
            if self.down:
                raise RuntimeError("DynamoDB is down")
            return super().stamps(ids)

    queries = Down(console.store)
    look = TableLook(TaskListing(queries), table_query_of(), ALICE, 60)
    queries.down = True
    look.again()  # logged, not raised
    queries.down = False
    console.claim(look.rows[0].id)
    seen = look.seen
    look.again()
    assert look.seen != seen


def test_the_table_live_url_repeats_the_filters_and_the_pages_token() -> None:
    query = table_query_of(group="team-a", status="running", type="echo", cursor="", name="")
    page = TaskListing(InMemoryTaskQueries(InMemoryTaskStore())).page(query, ALICE)
    assert table_live_url(query, page) == (
        f"/ui/tasks/live?group=team-a&status=running&type=echo&seen={table_seen(page)}"
    )


def table_query_of(**params: str) -> TaskListQuery:
    """``table_query`` of a request with these parameters."""
    req = falcon.testing.create_req(query_string="&".join(f"{k}={v}" for k, v in params.items()))
    return table_query(req)


def live_url_of(page: falcon.testing.Result) -> str:
    """The page's ``data-live`` URL, as the browser reads the attribute."""
    found = re.search(r'<main id="main" data-live="([^"]+)"', page.text)
    assert found, page.text[:500]
    return html.unescape(found.group(1))


def test_the_pages_carry_live_urls_that_tell_nothing_until_something_moves() -> None:
    # Given alice's table filtered by group and status, and her task's page
    console = Console(stream_max_s=0.4)
    task = console.submit()
    table = console.get("/ui/tasks", group="team-a", status="queued", name="")
    page = console.get(f"/ui/tasks/{task.id}")
    # Then each page's live URL names what it shows, and a stream of it tells no change
    table_url, task_url = live_url_of(table), live_url_of(page)
    assert table_url.startswith("/ui/tasks/live?group=team-a&status=queued&seen=")
    assert task_url == f"/ui/tasks/{task.id}/live?seen={task_seen(task)}"
    for url in (table_url, task_url):
        assert changes(console.follow(url)) == []
    # And once the task moved, both streams tell it at once (the pages as rendered are stale)
    console.claim(task.id)
    for url in (table_url, task_url):
        assert len(changes(console.follow(url))) == 1


# ------------------------------------------------------------------------------------ ended tasks, costs of a table
def test_an_ended_or_paused_task_page_has_no_live_url_and_its_stream_is_a_204() -> None:
    console = Console(stream_max_s=0.3)
    done = console.succeed(console.claim(console.submit().id).id)
    answer = console.client.simulate_post(
        "/v1/tasks",
        json={"type": "echo", "group": "team-a", "schedule": {"every_s": 60}},
        headers={"Authorization": "Bearer dev-alice"},
    )
    paused = answer.json["id"]
    console.browser.post(f"/ui/tasks/{paused}/pause")
    assert console.store.get(paused).status.value == "paused"
    for task_id in (done.id, paused):
        page = console.get(f"/ui/tasks/{task_id}")
        assert page.status_code == 200
        assert "data-live" not in page.text
        answer = console.get(f"/ui/tasks/{task_id}/live", seen="1.0")  # even from a page rendered before it ended
        assert answer.status_code == 204
        assert answer.text == ""
    # A task that can still move has its stream
    assert "data-live" in console.get(f"/ui/tasks/{console.submit().id}").text


def test_a_task_page_stream_ends_once_it_told_the_task_ended() -> None:
    # Given a running task's stream (long lifetime), the task succeeding 0.2 s in
    console = Console(stream_max_s=30, stream_ping_s=20)
    task = console.claim(console.submit().id)
    later(0.2, lambda: console.succeed(task.id))
    started = time.monotonic()
    answer = console.get(f"/ui/tasks/{task.id}/live", seen=task_seen(task))
    # Then it told the move and ended at once, not at its lifetime
    assert changes(answer) == [task_seen(console.store.get(task.id))]
    assert time.monotonic() - started < 5


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_filtered_table_reads_its_page_again_only_every_relist_s_and_never_after_a_scanned_out_read() -> None:
    # Given alice's table of failed tasks (none), looked at every 2 s with a relist every 60 s
    console = Console()
    for _ in range(3):
        console.submit()
    queries = CountingQueries(console.store)
    ticks = Ticks()
    look = TableLook(TaskListing(queries), table_query_of(status="failed"), ALICE, 60, ticks)
    pages = 0
    for _ in range(60):  # two minutes of looks
        queries.reads.clear()
        ticks.now += 2
        look.again()
        pages += "listed 3" in queries.reads
    # Then the page was read twice (at 60 s and 120 s), not every fifth look
    assert pages == 2
    # And a page whose read stopped at the scan budget (a budget of 2 tasks here) is never read again by the clock
    budgeted = TableLook(TaskListing(queries, scan_budget=2), table_query_of(status="failed"), ALICE, 60, ticks)
    assert not budgeted.relist_due()
    queries.reads.clear()
    for _ in range(90):
        ticks.now += 2
        budgeted.again()
    assert not any(read.startswith("listed") for read in queries.reads)
    # While an unfiltered page is never read again by the clock either (it sees every arrival)
    plain = TableLook(TaskListing(queries), table_query_of(), ALICE, 60, ticks)
    ticks.now += 600
    assert not plain.relist_due()


def test_an_admins_table_of_every_group_looks_at_its_rows_only_and_a_group_filter_brings_arrivals_back() -> None:
    console = Console()
    for group in ("team-a", "team-b"):
        console.submit(group, token="dev-carol")
    queries = CountingQueries(console.store)
    admin = Principal("root", frozenset(), admin=True)
    listing = TaskListing(queries, every_group=lambda: ["team-a", "team-b"])
    look = TableLook(listing, table_query_of(), admin, 60)
    queries.reads.clear()
    look.again()
    assert queries.reads == ["stamps 2"]  # no query per group of the system
    one = TableLook(listing, table_query_of(group="team-a"), admin, 60)
    queries.reads.clear()
    one.again()
    assert queries.reads == ["stamps 1", "newest team-a"]
