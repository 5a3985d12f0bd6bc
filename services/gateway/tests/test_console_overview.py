"""The console's overview (``/ui/``) over in-memory fakes: what it shows, to whom, under the console's CSP."""

from __future__ import annotations

import re

import pytest

from tq_gateway.console.pages_overview import duration
from tq_gateway.testing import browser_over_fakes
from tqcore.activity import Activity
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo
from tqcore.domain.task import Task
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit


class System:
    """Fakes with an executor, a scheduler, a waiting task and dead letters in team-a (2) and team-b (1)."""

    def __init__(self, *, scheduler: bool = True) -> None:
        self.store, self.queue, self.clock = InMemoryTaskStore(), RecordingQueue(), FixedClock()
        self.registry = InMemoryRegistry(["echo"])
        minute = int(self.clock.now().timestamp() // 60)
        self.registry.heartbeat(
            "executor", "h:1", 30, Activity(minute, succeeded=(7, 9), failed=(2, 1), pool="default")
        )
        if scheduler:
            at = self.clock.now().timestamp() - 3
            self.registry.heartbeat("scheduler", "h:2", 30, Activity(minute, fired=(4,), lag_s=(0.25,), pass_at=at))
        for n, group in enumerate(("team-a", "team-a", "team-b")):
            self.registry.add_group(group)
            self._failed(f"t-{n}", group)
        cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a"})
        waiting = Task.submit(task_id="t-w", owner="u", now=self.clock.now(), submitted={}, **cmd.task_fields())
        self.store.create(waiting)
        self.queue.send(waiting)
        self.clock.advance(200)

    def _failed(self, task_id: str, group: str) -> None:
        cmd = SubmitTask.model_validate({"type": "echo", "group": group, "retry": {"max_retries": 0}})
        task = Task.submit(task_id=task_id, owner="u", now=self.clock.now(), submitted={}, **cmd.task_fields())
        self.store.create(task)
        task = mutate(self.store, task.committed(), lambda t: t.claim(1, "h:1", self.clock.now(), 30))
        mutate(self.store, task, lambda t: t.fail(1, "h:1", ErrorInfo("E", "x"), self.clock.now(), jitter=0.0))

    def page(self, token: str) -> str:
        browser = browser_over_fakes(store=self.store, queue=self.queue, registry=self.registry, clock=self.clock)
        browser.sign_in(token)
        page = browser.get("/ui/")
        assert page.status_code == 200, page.text
        assert page.headers["content-security-policy"].startswith("default-src 'none'")
        return page.text


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_signed_in_the_overview_shows_queues_executors_throughput_lag_and_the_callers_dead_letters() -> None:
    html = System().page("dev-alice")
    text = text_of(html)
    assert "<h1>Overview</h1>" in html
    assert re.search(r"Executors alive\s+1\s+default: 1", text)
    assert re.search(r"Finished, last 5 min\s+16 / 3", text)
    assert re.search(r"Scheduler lag\s+0\.25 s\s+last pass 3 min 23 s ago", text)
    # the waiting task: default pool, normal priority, 1 waiting, for 3 min 20 s
    assert re.search(r"default\s+normal\s+1\s+0\s+3 min 20 s\s+0\s+1", text)
    # dead letters: alice's group only, linked to the DLQ page
    assert re.search(r"Dead letters\s+2\s+team-a\s*: 2", text)
    assert 'href="/ui/dlq?group=team-a"' in html
    assert "team-b" not in html
    # the chart is SVG with presentation attributes (the CSP forbids inline style) and an accessible name
    assert '<svg viewBox="0 0 300 80" role="img" aria-label="Attempts finished per minute' in html
    assert html.count('class="bar-ok"') == 15
    assert " style=" not in html
    assert "<script>" not in html


def test_an_admin_sees_every_groups_dead_letters_and_a_missing_scheduler_is_flagged() -> None:
    html = System(scheduler=False).page("dev-admin")
    text = text_of(html)
    assert re.search(r"Dead letters\s+3\s+team-a\s*: 2 · team-b\s*: 1", text)
    assert re.search(r"Scheduler lag\s+none fired in the last 5 minutes\s+no scheduler alive", text)
    assert '<p class="warn">no scheduler alive</p>' in html


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.0, "0 s"), (0.123, "0.12 s"), (2.5, "2.5 s"), (42.9, "42 s"), (185, "3 min 5 s"), (7440, "2 h 4 min")],
)
def test_durations_read_as_people_say_them(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown
