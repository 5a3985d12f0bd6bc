"""The console's schedules page over in-memory fakes: what it lists and how, Pause and Resume through the API's use
case, per-group isolation, CSRF, escaping, and ``GET /v1/schedules`` (the API the page shows no more than)."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import falcon.testing
import pytest

from tq_gateway.console.pages_schedules import schedule_row, schedule_words
from tq_gateway.testing import Browser, browser_over_fakes
from tqcore.documents import ListedTask
from tqcore.domain.codec import task_to_dict
from tqcore.domain.model import EventType, Status
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
BOB = {"Authorization": "Bearer dev-bob"}
#: Every minute from 09:00 (the fake clock says 08:00): the task waits, ``scheduled``.
EVERY_MINUTE_FROM_NINE = {"every_s": 60, "start_at": "2026-01-05T09:00:00Z"}


class Console:
    """A signed-out console over fakes, and a way to submit tasks through the API."""

    def __init__(self) -> None:
        self.store = InMemoryTaskStore()
        self.clock = FixedClock()
        self.browser = browser_over_fakes(store=self.store, clock=self.clock, registry=InMemoryRegistry(["echo"]))

    def submit(self, headers: dict[str, str] = ALICE, **body: Any) -> str:
        result = self.browser.client.simulate_post(
            "/v1/tasks", json={"type": "echo", "group": "team-a", **body}, headers=headers
        )
        assert result.status_code == 201, result.text
        return str(result.json["id"])

    def signed_in(self, token: str = "dev-alice") -> Browser:
        self.browser.sign_in(token)
        return self.browser


@pytest.fixture
def console() -> Console:
    return Console()


def row_ids(page: falcon.testing.Result) -> list[str]:
    """The task ids the page's table lists, in order."""
    return re.findall(r'<a href="/ui/tasks/([^"]+)" class="mono">', page.text)


def test_the_page_lists_repeating_and_waiting_tasks_newest_first_with_their_schedule_in_words(
    console: Console,
) -> None:
    # Given alice's tasks: two repeating, one waiting for its time, and one that just runs
    every = console.submit(schedule={"every_s": 60}, name="hourly report")
    cron = console.submit(schedule={"cron": "0 * * * *", "timezone": "Europe/Paris"})
    at = console.submit(schedule={"at": "2026-01-06T09:00:00Z"})
    console.submit()
    # When she opens the schedules page
    page = console.signed_in().get("/ui/schedules")
    # Then it lists exactly the three schedules, newest first, each with its schedule in words and its next run
    assert page.status_code == 200
    assert row_ids(page) == [at, cron, every]
    assert "every 60 s" in page.text
    assert "cron 0 * * * * (Europe/Paris)" in page.text
    assert "once at 2026-01-06 09:00:00Z" in page.text
    assert "hourly report" in page.text
    assert "2026-01-05 08:01:00Z" in page.text  # the every-60-s task's next run
    assert 'aria-current="page">Schedules</a>' in page.text
    # And each repeating task has a Pause button (the one-off task has none), going to its own action
    assert page.text.count(">Pause</button>") == 2
    assert f'action="/ui/tasks/{every}/pause"' in page.text
    assert f'action="/ui/tasks/{at}/pause"' not in page.text
    assert '<input type="hidden" name="back" value="/ui/schedules">' in page.text


def test_pause_and_resume_go_through_the_api_use_case_with_the_user_as_actor(console: Console) -> None:
    # Given alice's repeating task (waiting for its first slot) on the schedules page
    task_id = console.submit(schedule=EVERY_MINUTE_FROM_NINE)
    browser = console.signed_in()
    browser.get("/ui/schedules")
    # When she pauses it (the page's filters kept)
    assert console.store.get(task_id).status is Status.SCHEDULED
    page = browser.get("/ui/schedules", group="team-a")
    assert '<input type="hidden" name="back" value="/ui/schedules?group=team-a">' in page.text
    paused = browser.post(f"/ui/tasks/{task_id}/pause", {"back": "/ui/schedules?group=team-a"})
    # Then she is back on the page, filtered as before, told what happened, and the task shows paused
    assert paused.status_code == 303
    assert paused.headers["location"] == "/ui/schedules?group=team-a&done=paused"
    page = browser.get("/ui/schedules", group="team-a", done="paused")
    assert "Paused: no slot runs until it is resumed." in page.text
    assert '<span class="status status-paused">paused</span>' in page.text
    assert "none while paused" in page.text
    assert ">Resume</button>" in page.text
    assert ">Pause</button>" not in page.text
    assert console.store.get(task_id).status is Status.PAUSED
    # When she resumes it
    resumed = browser.post(f"/ui/tasks/{task_id}/resume", {"back": "/ui/schedules"})
    # Then it is scheduled again, and both changes are in its events with alice as the actor
    assert resumed.headers["location"] == "/ui/schedules?done=resumed"
    assert console.store.get(task_id).status is Status.SCHEDULED
    actors = {e.type: e.actor for e in console.store.events(task_id)}
    assert actors[EventType.PAUSED] == "alice"
    assert actors[EventType.RESUMED] == "alice"


def test_resuming_a_task_that_is_not_paused_is_a_409_page_with_the_reason(console: Console) -> None:
    task_id = console.submit(schedule={"every_s": 60})
    browser = console.signed_in()
    refused = browser.post(f"/ui/tasks/{task_id}/resume", {"back": "/ui/schedules"})
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "text/html; charset=utf-8"
    assert "not paused" in refused.text


def test_bob_sees_none_of_alices_schedules_and_cannot_pause_them(console: Console) -> None:
    # Given alice's repeating task and bob's own
    hers = console.submit(schedule=EVERY_MINUTE_FROM_NINE)
    his = console.submit(BOB, group="team-b", schedule={"every_s": 30})
    browser = console.signed_in("dev-bob")
    # When bob opens the schedules page he sees only his
    page = browser.get("/ui/schedules")
    assert row_ids(page) == [his]
    # And asking for alice's group is refused
    assert browser.get("/ui/schedules", group="team-a").status_code == 403
    # And pausing hers is a 404 page that changes nothing
    refused = browser.post(f"/ui/tasks/{hers}/pause", {"back": "/ui/schedules"})
    assert refused.status_code == 404
    assert "<h1>404 Not Found</h1>" in refused.text
    task = console.store.get(hers)
    assert task.status is Status.SCHEDULED
    assert task.paused_at is None


def test_a_forged_pause_is_refused_and_changes_nothing(console: Console) -> None:
    task_id = console.submit(schedule={"every_s": 60})
    browser = console.signed_in()
    assert browser.post(f"/ui/tasks/{task_id}/pause", {"back": "/ui/schedules"}, csrf=False).status_code == 403
    forged = browser.post(f"/ui/tasks/{task_id}/pause", headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert console.store.get(task_id).paused_at is None


def test_filters_by_type_and_pages_fifty_rows_at_a_time(console: Console) -> None:
    ids = [console.submit(schedule={"every_s": 60}) for _ in range(51)]
    browser = console.signed_in()
    first = browser.get("/ui/schedules", group="team-a")
    newest_first = sorted(ids, reverse=True)  # the fakes' ids (t-1, t-2...) sort as text, as ids do
    assert row_ids(first) == newest_first[:50]
    found = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', first.text)
    assert found is not None
    second = browser.get(html.unescape(found.group(1)))
    assert row_ids(second) == newest_first[50:]
    assert 'rel="next"' not in second.text
    assert ">First page</a>" in second.text
    assert row_ids(browser.get("/ui/schedules", type="other")) == []


def test_hostile_names_render_as_text(console: Console) -> None:
    console.submit(schedule={"every_s": 60}, name="<script>alert(1)</script>")
    page = console.signed_in().get("/ui/schedules")
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_signed_out_the_page_sends_to_sign_in_and_an_action_is_refused(console: Console) -> None:
    task_id = console.submit(schedule={"every_s": 60})
    page = console.browser.get("/ui/schedules")
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/?next=%2Fui%2Fschedules"
    assert console.browser.post(f"/ui/tasks/{task_id}/pause", csrf=False).status_code == 403


def test_an_invalid_filter_is_a_422_page(console: Console) -> None:
    page = console.signed_in().get("/ui/schedules", type="no spaces allowed")
    assert page.status_code == 422
    assert page.headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        ({"every_s": 60}, "every 60 s"),
        ({"every_s": 0.5}, "every 0.5 s"),
        ({"cron": "0 0 * * MON", "timezone": None}, "cron 0 0 * * MON (UTC)"),
        (
            {"every_s": 3600, "start_at": "2026-01-05T08:00:00.000Z", "end_at": "2026-02-01T00:00:00.000Z"},
            "every 3600 s, from 2026-01-05 08:00:00Z, until 2026-02-01 00:00:00Z",
        ),
    ],
)
def test_schedules_in_words(schedule: dict[str, Any], words: str) -> None:
    assert schedule_words(schedule) == words


def test_a_row_says_how_the_last_run_ended_and_a_pause_under_way(console: Console) -> None:
    # Given a repeating task whose last run failed for good, paused while its next run is under way
    task = console.store.get(console.submit(schedule={"every_s": 60}))
    doc = task_to_dict(task) | {
        "status": "running",
        "run_count": 3,
        "last_error": {"type": "Boom", "message": "x"},
        "paused_at": "2026-01-05T08:00:30.000Z",
        "next_slot_at": "2026-01-05T08:02:00.000Z",
    }
    row = schedule_row(ListedTask.from_doc(json.dumps(doc)))
    # Then the row says so, and offers Resume only
    assert row.last_run == "failed: Boom"
    assert row.pausing
    assert row.status == "running"
    assert row.next_run == "none while paused"
    assert (row.can_pause, row.can_resume) == (False, True)


def test_the_api_lists_the_same_schedules(console: Console) -> None:
    every = console.submit(schedule={"every_s": 60})
    console.submit()
    listed = console.browser.client.simulate_get("/v1/schedules", headers=ALICE)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json["items"]] == [every]
    assert listed.json["next_cursor"] is None
    refused = console.browser.client.simulate_get("/v1/schedules", params={"group": "team-a"}, headers=BOB)
    assert refused.status_code == 403
    bad = console.browser.client.simulate_get("/v1/schedules", params={"cursor": "bm9wZQ"}, headers=ALICE)
    assert bad.status_code == 400


def test_pausing_during_a_running_attempt_says_it_finishes_first(console: Console) -> None:
    # Given an every-minute task whose first run an executor has claimed
    task_id = console.submit(schedule={"every_s": 60})
    task = console.store.get(task_id)
    mutate(console.store, task, lambda t: t.claim(1, "host-a:1", console.clock.now(), 30))
    browser = console.signed_in()
    browser.get("/ui/schedules")
    # When alice pauses it, she is told the attempt finishes first, and the row shows it pausing
    paused = browser.post(f"/ui/tasks/{task_id}/pause", {"back": "/ui/schedules"})
    assert paused.headers["location"] == "/ui/schedules?done=pause_requested"
    page = browser.get("/ui/schedules", done="pause_requested")
    assert "Pausing: the run under way finishes first." in page.text
    assert "pausing (running)" in page.text
    assert console.store.get(task_id).status is Status.RUNNING
