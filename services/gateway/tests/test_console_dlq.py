"""The console's dead-letter page over in-memory fakes: the list and its filters, its one ``Redrive`` (the ticked
rows; none ticked: all matching of the one group, else the page's rows; a dry run first, then the confirmed redrive
of exactly what it named), isolation, CSRF, escaping, and the ``type`` filter the API gained with it."""

from __future__ import annotations

import itertools
import re

import falcon.testing
import pytest

from tq_gateway.console.pages_dlq import count_words
from tq_gateway.testing import Browser, browser_over_fakes
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo, EventType, Status
from tqcore.domain.task import Task
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

WORKER = "host-a:1"


class Console:
    """A signed-out console over fakes, and a way to put dead letters in its store."""

    def __init__(self) -> None:
        self.store = InMemoryTaskStore()
        self.clock = FixedClock()
        self.queue = RecordingQueue()
        self.registry = InMemoryRegistry(["echo", "resize"])
        self.browser = browser_over_fakes(store=self.store, clock=self.clock, queue=self.queue, registry=self.registry)
        self._ids = (f"d-{n:03d}" for n in itertools.count(1))

    def dead_letter(
        self, group: str = "team-a", *, type: str = "echo", name: str | None = None, error: str = "boom"
    ) -> str:
        """A task of ``group`` driven to ``failed`` (one attempt, no retries), a second after the last one."""
        cmd = SubmitTask.model_validate({"type": type, "group": group, "name": name, "retry": {"max_retries": 0}})
        self.clock.advance(1)
        task = Task.submit(
            task_id=next(self._ids), owner="alice", now=self.clock.now(), submitted=cmd.model_dump(mode="json"),
            **cmd.task_fields(),
        )  # fmt: skip
        self.store.create(task)
        self.registry.add_group(group)
        task = mutate(self.store, task.committed(), lambda t: t.claim(1, WORKER, self.clock.now(), 30))
        task = mutate(
            self.store, task, lambda t: t.fail(1, WORKER, ErrorInfo("Boom", error), self.clock.now(), jitter=0.0)
        )
        assert task.status is Status.FAILED
        return task.id

    def signed_in(self, token: str = "dev-alice") -> Browser:
        self.browser.sign_in(token)
        return self.browser

    def status(self, task_id: str) -> Status:
        return self.store.get(task_id).status


@pytest.fixture
def console() -> Console:
    return Console()


def row_ids(page: falcon.testing.Result) -> list[str]:
    return re.findall(r'<a href="/ui/tasks/([^"]+)" class="mono"', page.text)


def hidden_picks(page: falcon.testing.Result) -> list[str]:
    return re.findall(r'<input type="hidden" name="pick" value="([^"]+)">', page.text)


@pytest.mark.parametrize(("count", "words"), [(0, "0 tasks"), (1, "1 task"), (2, "2 tasks"), (1000, "1000 tasks")])
def test_counts_are_said_as_n_task_or_n_tasks(count: int, words: str) -> None:
    assert count_words(count) == words


def page_picks(page: falcon.testing.Result) -> list[str]:
    return re.findall(r'<input type="hidden" name="page_pick" value="([^"]+)">', page.text)


def test_the_page_lists_dead_letters_newest_first_with_their_error_and_one_redrive(console: Console) -> None:
    older = console.dead_letter(error="disk full")
    newer = console.dead_letter(type="resize")
    page = console.signed_in().get("/ui/dlq")
    assert page.status_code == 200
    assert row_ids(page) == [newer, older]
    assert "Boom: disk full" in page.text
    # One Redrive button (no per-row buttons: by role and name it is unambiguous), a checkbox per row
    assert page.text.count("<button") - page.text.count(">Filter</button>") - page.text.count(">Sign out</button>") == 1
    assert page.text.count(">Redrive</button>") == 1
    assert f'name="pick" value="team-a:{older}"' in page.text
    assert f'aria-label="Select {older}"' in page.text
    assert "every dead letter of group team-a" in page.text  # alice has one group: none ticked means all of it
    assert 'aria-current="page">Dead letters</a>' in page.text
    # And the type filter narrows it, as GET /v1/dlq?type= does
    assert row_ids(console.browser.get("/ui/dlq", type="resize")) == [newer]
    api = console.browser.client.simulate_get(
        "/v1/dlq", params={"type": "resize"}, headers={"Authorization": "Bearer dev-alice"}
    )
    assert [t["id"] for t in api.json["items"]] == [newer]


def test_redriving_one_ticked_row_shows_a_dry_run_of_1_task_then_redrives_it_when_confirmed(console: Console) -> None:
    # Given two dead letters
    target = console.dead_letter()
    other = console.dead_letter()
    browser = console.signed_in()
    page = browser.get("/ui/dlq")
    # When alice ticks one row and presses Redrive
    dry = browser.post("/ui/dlq/redrive", [("group", ""), ("type", ""), ("pick", f"team-a:{target}")] + [
        ("page_pick", pick) for pick in page_picks(page)
    ])  # fmt: skip
    # Then a confirmation page says the dry run found 1 task, and nothing has changed yet
    assert dry.status_code == 200
    assert "A dry run found <strong>1 task</strong> to redrive" in dry.text
    assert ">Confirm redrive</button>" in dry.text
    assert ">Back</a>" in dry.text
    assert "Dead letters</a>" not in dry.text.replace('aria-current="page">Dead letters</a>', "")
    assert hidden_picks(dry) == [f"team-a:{target}"]
    assert console.status(target) is Status.FAILED
    assert console.queue.sent == []
    # When she confirms
    done = browser.post("/ui/dlq/redrive", [("confirm", "yes"), ("group", ""), ("pick", f"team-a:{target}")])
    # Then it alone is queued again, with alice as the actor, and the list says how many were redriven
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/dlq?redriven=1"
    assert console.status(target) is Status.QUEUED
    assert console.status(other) is Status.FAILED
    assert [e.actor for e in console.store.events(target) if e.type is EventType.REDRIVEN] == ["alice"]
    page = browser.get("/ui/dlq", redriven="1")
    assert "Redriven 1 task: queued again with a fresh retry budget." in page.text
    assert row_ids(page) == [other]


def test_redriving_the_selected_rows_counts_2_tasks(console: Console) -> None:
    first, second, third = (console.dead_letter() for _ in range(3))
    browser = console.signed_in()
    browser.get("/ui/dlq")
    picks = [("pick", f"team-a:{first}"), ("pick", f"team-a:{third}")]
    dry = browser.post("/ui/dlq/redrive", picks)
    assert "A dry run found <strong>2 tasks</strong> to redrive" in dry.text
    done = browser.post("/ui/dlq/redrive", [("confirm", "yes"), *picks])
    assert done.headers["location"] == "/ui/dlq?redriven=2"
    assert [console.status(t) for t in (first, second, third)] == [Status.QUEUED, Status.FAILED, Status.QUEUED]


def test_redrive_with_none_ticked_takes_all_matching_of_the_one_group_as_the_dry_run_named(console: Console) -> None:
    # Given dead letters of two types, more of them than a page shows
    echoes = [console.dead_letter() for _ in range(51)]
    resize = console.dead_letter(type="resize")
    browser = console.signed_in()
    page = browser.get("/ui/dlq", type="echo")
    assert len(page_picks(page)) == 50
    # When alice (one group) presses Redrive with none ticked: the dry run names every echo task, not only the page's
    dry = browser.post(
        "/ui/dlq/redrive", [("group", ""), ("type", "echo")] + [("page_pick", p) for p in page_picks(page)]
    )
    assert "A dry run found <strong>51 tasks</strong> to redrive (type echo)" in dry.text
    assert sorted(hidden_picks(dry)) == sorted(f"team-a:{t}" for t in echoes)
    # And a dead letter that arrives before she confirms is not redriven by the confirmation
    late = console.dead_letter()
    done = browser.post(
        "/ui/dlq/redrive", [("confirm", "yes"), ("type", "echo")] + [("pick", p) for p in hidden_picks(dry)]
    )
    assert done.headers["location"] == "/ui/dlq?type=echo&redriven=51"
    assert {console.status(t) for t in echoes} == {Status.QUEUED}
    assert console.status(resize) is Status.FAILED
    assert console.status(late) is Status.FAILED


def test_a_dry_run_that_finds_nothing_offers_no_confirm(console: Console) -> None:
    # Given a ticked row that is no longer a dead letter by the time Redrive is pressed (redriven in another tab)
    target = console.dead_letter()
    browser = console.signed_in()
    browser.get("/ui/dlq")
    browser.post("/ui/dlq/redrive", [("confirm", "yes"), ("pick", f"team-a:{target}")])
    dry = browser.post("/ui/dlq/redrive", [("pick", f"team-a:{target}")])
    assert "A dry run found <strong>0 tasks</strong> to redrive: nothing to do." in dry.text
    assert "Confirm redrive" not in dry.text


def test_with_several_groups_and_none_chosen_redrive_takes_the_pages_rows(console: Console) -> None:
    # carol is in team-a and team-b: "all matching" without a group would be ambiguous, so the page's rows it is
    mine_a = console.dead_letter()
    mine_b = console.dead_letter("team-b")
    browser = console.signed_in("dev-carol")
    page = browser.get("/ui/dlq")
    assert len(row_ids(page)) == 2
    assert "the dead letters on this page (choose a group to take all of its matching ones)" in page.text
    dry = browser.post("/ui/dlq/redrive", [("group", "")] + [("page_pick", p) for p in page_picks(page)])
    assert "<strong>2 tasks</strong>" in dry.text
    assert sorted(hidden_picks(dry)) == sorted([f"team-a:{mine_a}", f"team-b:{mine_b}"])
    # And with a group chosen, none ticked means every dead letter of it
    assert "every dead letter of group team-b" in browser.get("/ui/dlq", group="team-b").text


def test_selected_rows_of_several_groups_are_redriven_group_by_group(console: Console) -> None:
    mine_a = console.dead_letter("team-a")
    mine_b = console.dead_letter("team-b")
    browser = console.signed_in("dev-carol")
    browser.get("/ui/dlq")
    picks = [("pick", f"team-a:{mine_a}"), ("pick", f"team-b:{mine_b}")]
    assert "<strong>2 tasks</strong>" in browser.post("/ui/dlq/redrive", picks).text
    browser.post("/ui/dlq/redrive", [("confirm", "yes"), *picks])
    assert console.status(mine_a) is Status.QUEUED
    assert console.status(mine_b) is Status.QUEUED


def test_bob_sees_none_of_alices_dead_letters_and_cannot_redrive_them(console: Console) -> None:
    hers = console.dead_letter("team-a")
    his = console.dead_letter("team-b")
    browser = console.signed_in("dev-bob")
    assert row_ids(browser.get("/ui/dlq")) == [his]
    assert browser.get("/ui/dlq", group="team-a").status_code == 403
    # Her id under his group is not found (nothing revealed), under her group refused: nothing changes either way
    dry = browser.post("/ui/dlq/redrive", {"pick": f"team-b:{hers}"})
    assert "<strong>0 tasks</strong>" in dry.text
    assert (
        browser.post("/ui/dlq/redrive", [("confirm", "yes"), ("pick", f"team-b:{hers}")]).headers["location"]
        == "/ui/dlq?redriven=0"
    )
    refused = browser.post("/ui/dlq/redrive", [("confirm", "yes"), ("pick", f"team-a:{hers}")])
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "text/html; charset=utf-8"
    assert console.status(hers) is Status.FAILED
    assert console.queue.sent == []


def test_a_forged_redrive_is_refused_and_changes_nothing(console: Console) -> None:
    target = console.dead_letter()
    browser = console.signed_in()
    fields = [("confirm", "yes"), ("pick", f"team-a:{target}")]
    assert browser.post("/ui/dlq/redrive", fields, csrf=False).status_code == 403
    cross_site = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert browser.post("/ui/dlq/redrive", fields, headers=cross_site).status_code == 403
    assert console.status(target) is Status.FAILED


def test_hostile_names_and_errors_render_as_text(console: Console) -> None:
    console.dead_letter(name="<img src=x onerror=alert(1)>", error="<script>alert(2)</script>")
    page = console.signed_in().get("/ui/dlq")
    assert "<img src=x" not in page.text
    assert "<script>alert(2)" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page.text


def test_the_redriven_notice_says_only_a_number(console: Console) -> None:
    browser = console.signed_in()
    assert "Redriven" not in browser.get("/ui/dlq", redriven="<b>all</b>").text
    assert "Redriven 3 tasks" in browser.get("/ui/dlq", redriven="3").text


def test_pages_of_fifty(console: Console) -> None:
    ids = [console.dead_letter() for _ in range(51)]
    browser = console.signed_in()
    first = browser.get("/ui/dlq")
    assert row_ids(first) == ids[::-1][:50]
    found = re.search(r'<a href="([^"]+)" rel="next">Next page</a>', first.text)
    assert found is not None
    assert row_ids(browser.get(found.group(1).replace("&amp;", "&"))) == [ids[0]]


def test_the_api_redrives_by_type_too(console: Console) -> None:
    echo = console.dead_letter()
    resize = console.dead_letter(type="resize")
    alice = {"Authorization": "Bearer dev-alice"}
    body = {"group": "team-a", "type": "resize"}
    answer = console.browser.client.simulate_post("/v1/dlq/redrive", json=body, headers=alice)
    assert answer.status_code == 200
    assert answer.json["ids"] == [resize]
    by_ids = {**body, "ids": [echo, resize]}  # the type narrows the ids as well
    assert console.browser.client.simulate_post("/v1/dlq/redrive", json=by_ids, headers=alice).json["ids"] == []
    assert console.status(echo) is Status.FAILED
    assert console.status(resize) is Status.QUEUED
