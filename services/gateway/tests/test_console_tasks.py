"""The console's tasks table and task page over in-memory fakes: what each user sees (only their groups), filters
and paging, hostile text shown as text, runs and their logs, and the actions through the API's use cases."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from tq_gateway.testing import Browser, browser_over_fakes
from tqcore.domain.model import ErrorInfo, RunLog, Status
from tqcore.domain.task import Task
from tqcore.testing import FixedClock, InMemoryRunLogs, InMemoryTaskStore
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
BOB = {"Authorization": "Bearer dev-bob"}
WORKER = "host-a:1"
HOSTILE = "<script>alert('x')</script>"


class Console:
    """Alice (team-a) at the console, over fakes she can also reach through the API and the store."""

    def __init__(self, token: str = "dev-alice") -> None:
        self.store, self.clock, self.logs = InMemoryTaskStore(), FixedClock(), InMemoryRunLogs()
        ids = (f"t-{n:04d}" for n in itertools.count(1))  # sort by creation, like real ids
        self.browser: Browser = browser_over_fakes(
            store=self.store, clock=self.clock, logs=self.logs, new_id=lambda: next(ids)
        )
        self.browser.sign_in(token)

    def submit(self, headers: dict[str, str] = ALICE, **body: Any) -> str:
        response = self.browser.client.simulate_post(
            "/v1/tasks", json={"type": "echo", "group": "team-a", **body}, headers=headers
        )
        assert response.status_code == 201, response.text
        return str(response.json["id"])

    def act(self, task_id: str, action: str, **fields: str) -> str:
        """POST the task page's ``action`` form; the notice it redirects back with (``?done=``)."""
        result = self.browser.post(f"/ui/tasks/{task_id}/{action}", fields)
        assert result.status_code == 303, result.text
        location = result.headers["location"]
        assert location.startswith(f"/ui/tasks/{task_id}?done=")
        return location.split("=", 1)[1]

    def api(self, path: str, headers: dict[str, str] = ALICE) -> Any:
        return self.browser.client.simulate_get(path, headers=headers).json

    def claim(self, task_id: str) -> Task:
        task = self.store.get(task_id)
        return mutate(self.store, task, lambda t: t.claim(t.attempts + 1, WORKER, self.clock.now(), 30))

    def finish(self, task_id: str, log: bytes | None = b"", *, fail: bool = False) -> Task:
        task = self.claim(task_id)
        assert task.claim_seq is not None
        if log:
            self.logs.put(task_id, task.claim_seq, log)
        record = None if log is None else RunLog(len(log), 3600)
        if fail:
            error = ErrorInfo("ValueError", HOSTILE)
            return mutate(
                self.store,
                task,
                lambda t: t.fail(t.attempts, WORKER, error, self.clock.now(), jitter=0, log=record, permanent=True),
            )
        return mutate(
            self.store, task, lambda t: t.succeed(t.attempts, WORKER, {"html": HOSTILE}, self.clock.now(), log=record)
        )


def ids_in(page: str) -> list[str]:
    return re.findall(r'<td class="mono"><a href="/ui/tasks/([^"]+)">', page)


def test_the_table_lists_the_callers_tasks_newest_first_with_links_type_and_status() -> None:
    console = Console()
    first = console.submit(name="first")
    second = console.submit(type="echo", name="second")
    console.submit(headers=BOB, group="team-b")
    page = console.browser.get("/ui/tasks")
    assert page.status_code == 200
    assert ids_in(page.text) == [second, first]
    assert '<span class="status status-queued">queued</span>' in page.text
    assert "<td>echo</td>" in page.text
    assert 'aria-current="page">Tasks</a>' in page.text


def test_bob_sees_none_of_alices_tasks_not_even_by_url() -> None:
    console = Console()
    alices = console.submit(payload={"secret": "alice-only"})
    bob = Browser(console.browser.client)
    bob.sign_in("dev-bob")
    assert ids_in(bob.get("/ui/tasks").text) == []
    page = bob.get(f"/ui/tasks/{alices}")
    assert page.status_code == 404
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "alice-only" not in page.text
    assert bob.get(f"/ui/tasks/{alices}/runs/1.1/log").status_code == 404
    assert bob.get("/ui/tasks", group="team-a").status_code == 403
    for action in ("cancel", "update"):
        refused = bob.post(f"/ui/tasks/{alices}/{action}", {"priority": "high", "version": "2"})
        assert refused.status_code == 404
    assert console.store.get(alices).status is Status.QUEUED
    assert console.store.get(alices).version == 2


def test_filters_by_status_type_and_name_as_the_api_does() -> None:
    console = Console()
    report = console.submit(name="Nightly report")
    console.submit(name="hourly sync")
    cancelled = console.submit(name="nightly cleanup")
    console.browser.client.simulate_delete(f"/v1/tasks/{cancelled}", headers=ALICE)
    browser = console.browser
    assert ids_in(browser.get("/ui/tasks", name="NIGHTLY").text) == [cancelled, report]
    assert ids_in(browser.get("/ui/tasks", name="nightly", status="queued").text) == [report]
    assert ids_in(browser.get("/ui/tasks", type="other").text) == []
    assert ids_in(browser.get("/ui/tasks", group="team-a", status="", type="", name="").text) != []
    api = console.api("/v1/tasks?name=NIGHTLY")
    assert [item["id"] for item in api["items"]] == [cancelled, report]
    filtered = browser.get("/ui/tasks", name="nightly", status="cancelled")
    assert '<option value="cancelled" selected>' in filtered.text
    assert 'value="nightly"' in filtered.text
    bad = browser.get("/ui/tasks", status="bogus")
    assert bad.status_code == 422
    assert "<h1>422" in bad.text


def test_pages_of_fifty_and_the_next_page_link() -> None:
    console = Console()
    made = [console.submit() for _ in range(53)]
    first = console.browser.get("/ui/tasks")
    assert ids_in(first.text) == made[::-1][:50]
    link = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', first.text)
    assert link is not None
    second = console.browser.client.simulate_get(link.group(1).replace("&amp;", "&"), cookies=console.browser.cookies)
    assert ids_in(second.text) == made[::-1][50:]
    assert 'rel="next"' not in second.text
    assert ">Newest</a>" in second.text


def test_the_task_page_shows_state_payload_result_runs_and_events_with_actors_all_escaped() -> None:
    console = Console()
    task_id = console.submit(name=HOSTILE, description=HOSTILE, payload={"html": HOSTILE})
    console.finish(task_id, log=b"<script>alert(1)</script>\nline 2\n")
    page = console.browser.get(f"/ui/tasks/{task_id}")
    assert page.status_code == 200
    assert HOSTILE not in page.text
    assert "<script>" not in page.text
    assert "&lt;script&gt;alert(" in page.text
    assert f'<dd class="mono">{task_id}</dd>' in page.text
    assert 'id="task-status">succeeded</span>' in page.text
    assert "<td>submitted</td><td>alice</td>" in page.text
    assert f"<td>succeeded</td><td>executor:{WORKER}</td>" in page.text
    assert '<td class="mono">1.1</td>' in page.text
    log_link = (
        f'<a href="/ui/tasks/{task_id}/runs/1.1/log" data-log aria-expanded="false" aria-controls="log-1">Log</a>'
    )
    assert log_link in page.text
    assert ">Cancel</button>" not in page.text  # it ended
    assert ">Redrive</button>" not in page.text  # it did not fail


def test_the_log_is_served_as_plain_text_never_as_html() -> None:
    console = Console()
    task_id = console.submit()
    console.finish(task_id, log=b"<script>alert(1)</script>\n")
    log = console.browser.get(f"/ui/tasks/{task_id}/runs/1.1/log")
    assert log.status_code == 200
    assert log.headers["content-type"] == "text/plain; charset=utf-8"
    assert log.headers["x-content-type-options"] == "nosniff"
    assert log.content == b"<script>alert(1)</script>\n"
    assert console.browser.get(f"/ui/tasks/{task_id}/runs/9.9/log").status_code == 404


def test_cancel_from_the_page_goes_through_the_use_case_with_the_user_as_actor() -> None:
    console = Console()
    task_id = console.submit()
    page = console.browser.get(f"/ui/tasks/{task_id}")
    assert ">Cancel</button>" in page.text
    assert console.act(task_id, "cancel") == "cancelled"
    assert console.store.get(task_id).status is Status.CANCELLED
    events = console.api(f"/v1/tasks/{task_id}/events")["items"]
    assert (events[-1]["type"], events[-1]["actor"]) == ("cancelled", "alice")
    after = console.browser.get(f"/ui/tasks/{task_id}", done="cancelled")
    assert '<p class="notice" role="status">Cancelled.</p>' in after.text
    assert ">Cancel</button>" not in after.text


def test_cancelling_a_running_task_asks_its_attempt_to_stop() -> None:
    console = Console()
    task_id = console.submit()
    console.claim(task_id)
    assert console.act(task_id, "cancel") == "cancel_requested"
    task = console.store.get(task_id)
    assert (task.status, task.cancel_requested) == (Status.RUNNING, True)
    page = console.browser.get(f"/ui/tasks/{task_id}", done="cancel_requested")
    assert "Cancel requested" in page.text
    assert ">Cancel</button>" not in page.text


def test_a_refused_action_is_an_error_page_with_the_reason_and_a_way_back() -> None:
    console = Console()
    task_id = console.submit()
    console.finish(task_id)
    refused = console.browser.post(f"/ui/tasks/{task_id}/cancel")
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>409 Conflict</h1>" in refused.text
    assert f'<a href="/ui/tasks/{task_id}">Back</a>' in refused.text
    assert console.store.get(task_id).status is Status.SUCCEEDED


def test_redrive_shows_only_for_a_failed_task_and_requeues_it() -> None:
    console = Console()
    task_id = console.submit()
    console.finish(task_id, fail=True)
    page = console.browser.get(f"/ui/tasks/{task_id}")
    assert ">Redrive</button>" in page.text
    assert "&lt;script&gt;" in page.text  # the error message, escaped
    assert console.act(task_id, "redrive") == "redriven"
    assert console.store.get(task_id).status is Status.QUEUED
    events = console.api(f"/v1/tasks/{task_id}/events")["items"]
    assert any(e["type"] == "redriven" and e["actor"] == "alice" for e in events)


def test_priority_is_changed_at_the_version_the_page_showed() -> None:
    console = Console()
    task_id = console.submit()
    page = console.browser.get(f"/ui/tasks/{task_id}")
    version = re.search(r'name="version" value="(\d+)"', page.text)
    assert version is not None
    assert console.act(task_id, "update", priority="high", version=version.group(1)) == "updated"
    assert console.store.get(task_id).priority.value == "high"
    stale = console.browser.post(f"/ui/tasks/{task_id}/update", {"priority": "low", "version": version.group(1)})
    assert stale.status_code == 412
    assert console.store.get(task_id).priority.value == "high"
    bad = console.browser.post(f"/ui/tasks/{task_id}/update", {"priority": "urgent", "version": "3"})
    assert bad.status_code == 422
    # A change without the version the page showed is refused (never applied blind, without If-Match)
    blind = console.browser.post(f"/ui/tasks/{task_id}/update", {"priority": "low"})
    assert blind.status_code == 422
    assert blind.headers["content-type"] == "text/html; charset=utf-8"
    assert "version" in blind.text
    assert console.store.get(task_id).priority.value == "high"
    events = console.api(f"/v1/tasks/{task_id}/events")["items"]
    assert (events[-1]["type"], events[-1]["actor"]) == ("updated", "alice")


def test_an_action_without_the_csrf_token_changes_nothing() -> None:
    console = Console()
    task_id = console.submit()
    assert console.browser.post(f"/ui/tasks/{task_id}/cancel", csrf=False).status_code == 403
    assert console.store.get(task_id).status is Status.QUEUED


def test_a_repeating_task_shows_its_schedule_and_next_runs() -> None:
    console = Console()
    task_id = console.submit(schedule={"every_s": 60, "start_at": "2026-01-05T09:00:00Z"})
    page = console.browser.get(f"/ui/tasks/{task_id}")
    assert "every 60 s, from 2026-01-05 09:00:00Z" in page.text
    slots = re.findall(r"<li>([^<]+)</li>", page.text.split('class="next-runs"')[1].split("</ol>")[0])
    assert slots == [f"2026-01-05 09:0{n}:00Z" for n in range(5)]


def test_pause_and_resume_a_repeating_task() -> None:
    console = Console()
    task_id = console.submit(schedule={"every_s": 60, "start_at": "2026-01-05T09:00:00Z"})
    page = console.browser.get(f"/ui/tasks/{task_id}")
    assert ">Pause</button>" in page.text
    assert ">Resume</button>" not in page.text
    assert console.act(task_id, "pause") == "paused"
    paused = console.browser.get(f"/ui/tasks/{task_id}", done="paused")
    assert ">Resume</button>" in paused.text
    assert ">Pause</button>" not in paused.text
    assert console.act(task_id, "resume") == "resumed"
    events = console.api(f"/v1/tasks/{task_id}/events")["items"]
    assert [(e["type"], e["actor"]) for e in events if e["type"] in ("paused", "resumed")] == [
        ("paused", "alice"),
        ("resumed", "alice"),
    ]


def test_without_a_session_the_task_pages_send_to_sign_in() -> None:
    console = Console()
    task_id = console.submit()
    anonymous = Browser(console.browser.client)
    page = anonymous.get(f"/ui/tasks/{task_id}")
    assert page.status_code == 303
    assert page.headers["location"] == f"/ui/?next=%2Fui%2Ftasks%2F{task_id}"
    assert anonymous.get("/ui/tasks").status_code == 303
    # A page's script (the Log control's fetch, the live refresh) gets a 401, not the sign-in page's HTML as its
    # text: console.js then reloads the page, which goes to sign in
    for path in (f"/ui/tasks/{task_id}/runs/1.1/log", f"/ui/tasks/{task_id}"):
        scripted = anonymous.client.simulate_get(path, headers={"Sec-Fetch-Mode": "cors"})
        assert scripted.status_code == 401
        assert "location" not in scripted.headers
    navigated = anonymous.client.simulate_get(f"/ui/tasks/{task_id}", headers={"Sec-Fetch-Mode": "navigate"})
    assert navigated.status_code == 303


@pytest.mark.parametrize(
    ("back", "location"),
    [
        ("/ui/tasks?status=queued", "/ui/tasks?status=queued&done=cancelled"),
        ("https://evil.example/", "/ui/?done=cancelled"),
    ],
)
def test_an_action_from_another_page_goes_back_there_but_only_to_a_console_page(back: str, location: str) -> None:
    console = Console()
    task_id = console.submit()
    result = console.browser.post(f"/ui/tasks/{task_id}/cancel", {"back": back})
    assert result.status_code == 303
    assert result.headers["location"] == location


def test_a_repeating_tasks_schedule_is_changed_through_the_api_s_validation() -> None:
    console = Console()
    task_id = console.submit(schedule={"every_s": 60, "start_at": "2026-01-05T09:00:00Z"})
    page = console.browser.get(f"/ui/tasks/{task_id}")
    assert 'name="every_s" inputmode="decimal" size="8" value="60.0"' in page.text
    assert 'name="start_at" value="2026-01-05T09:00:00.000Z"' in page.text
    version = re.search(r'name="version" value="(\d+)"', page.text)
    assert version is not None
    fields = {"every_s": "", "cron": "0 6 * * MON", "timezone": "Europe/Paris", "start_at": "2026-01-05T09:00:00Z"}
    assert console.act(task_id, "schedule", version=version.group(1), **fields) == "updated"
    schedule = console.api(f"/v1/tasks/{task_id}")["schedule"]
    assert schedule == {"cron": "0 6 * * MON", "timezone": "Europe/Paris", "start_at": "2026-01-05T09:00:00.000Z"}
    both = console.browser.post(f"/ui/tasks/{task_id}/schedule", {"every_s": "30", "cron": "* * * * *"})
    assert both.status_code == 422
    bad = console.browser.post(f"/ui/tasks/{task_id}/schedule", {"cron": "every monday"})
    assert bad.status_code == 422
    assert "not a valid five-field cron expression" in bad.text
    assert console.api(f"/v1/tasks/{task_id}")["schedule"]["cron"] == "0 6 * * MON"
    once = console.submit()
    assert 'action="/ui/tasks/' + once + '/schedule"' not in console.browser.get(f"/ui/tasks/{once}").text
