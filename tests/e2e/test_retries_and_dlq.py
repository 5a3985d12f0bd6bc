"""Retries with backoff, dead letters and redrive over HTTP (issue 3, acceptance 3)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx
import pytest

from tests.conftest import ConsoleUser, executions, wait_for_status
from tqdev.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: The scheduler polls every second; a retry may start up to this much after it falls due.
PROMOTION_SLACK_S = 1.5


def at(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def starts(api: httpx.Client, task_id: str) -> list[float]:
    events = api.get(f"/v1/tasks/{task_id}/events").json()["items"]
    return [at(e["at"]) for e in events if e["type"] == "claimed"]


def dlq_messages(stack: Stack) -> int:
    """Messages (visible or not) in the normal priority's dead-letter queue."""
    from tqcore.adapters import aws
    from tqcore.domain.model import Priority
    from tqcore.settings import CoreSettings

    settings = CoreSettings(endpoint_url=stack.config.endpoint_url, prefix=stack.config.prefix)
    sqs = aws.client(settings, "sqs")
    url = sqs.get_queue_url(QueueName=settings.dlq_name(Priority.NORMAL))["QueueUrl"]
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def test_flaky_twice_succeeds_on_attempt_3_with_gaps_within_the_policy(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    alice = client("alice")
    body = {"type": "flaky", "group": "team-a", "payload": {"fail_times": 2}, "retry": {"backoff_base_s": 1.0}}
    task_id = alice.post("/v1/tasks", json=body).json()["id"]
    done = wait_for_status(alice, task_id, {"succeeded", "failed"}, timeout_s=30)
    assert (done["status"], done["attempts"], done["retries"]) == ("succeeded", 3, 2)
    assert done["result"] == {"attempt": 3}
    # retry n waits min(max, base * 2**(n-1)) minus at most half of it (jitter)
    first, second, third = starts(alice, task_id)
    for gap, nominal in ((second - first, 1.0), (third - second, 2.0)):
        assert nominal / 2 <= gap <= nominal + PROMOTION_SLACK_S, (gap, nominal)
    runs = alice.get(f"/v1/tasks/{task_id}/runs").json()["items"]
    assert [(r["attempt"], r["status"]) for r in runs] == [(3, "succeeded"), (2, "failed"), (1, "failed")]
    assert runs[-1]["error"]["type"] == "DemoError"


def test_out_of_retries_is_failed_after_exactly_6_attempts_listed_in_the_dlq_and_redriven(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    alice = client("alice")
    body = {
        "type": "flaky",
        "group": "team-a",
        "payload": {"fail_times": 99},
        "retry": {"max_retries": 5, "backoff_base_s": 0.2, "backoff_max_s": 1.0},
    }
    task_id = alice.post("/v1/tasks", json=body).json()["id"]
    done = wait_for_status(alice, task_id, {"succeeded", "failed"}, timeout_s=40)
    assert (done["status"], done["attempts"]) == ("failed", 6)
    assert done["last_error"]["type"] == "DemoError"
    assert [a for t, a in executions(stack) if t == task_id] == [1, 2, 3, 4, 5, 6]
    # its message sits in its priority's dead-letter queue
    assert dlq_messages(stack) >= 1
    # listed among the group's dead letters
    dlq = alice.get("/v1/dlq", params={"group": "team-a"}).json()["items"]
    assert task_id in [t["id"] for t in dlq]
    # and a redrive runs it again with a fresh retry budget
    redriven = alice.post(f"/v1/tasks/{task_id}/redrive")
    assert redriven.status_code == 200, redriven.text
    assert redriven.json()["status"] == "queued"
    again = wait_for_status(alice, task_id, {"failed"}, timeout_s=40)
    assert again["attempts"] == 6
    assert len([a for t, a in executions(stack) if t == task_id]) == 12
    events = [e["type"] for e in alice.get(f"/v1/tasks/{task_id}/events").json()["items"]]
    assert events.count("redriven") == 1
    assert events.count("dead_lettered") == 2
    # a task that has not failed cannot be redriven
    ok_id = alice.post("/v1/tasks", json={"type": "echo", "group": "team-a"}).json()["id"]
    wait_for_status(alice, ok_id, {"succeeded"})
    assert alice.post(f"/v1/tasks/{ok_id}/redrive").status_code == 409


def test_the_consoles_dead_letter_page_redrives_after_a_dry_run_as_the_user(
    client: Callable[[str], httpx.Client], console: Callable[[str], ConsoleUser]
) -> None:
    # Given a task of bob's that failed for good (no retries)
    bob = client("bob")
    body = {"type": "flaky", "group": "team-b", "payload": {"fail_times": 99}, "retry": {"max_retries": 0}}
    task_id = bob.post("/v1/tasks", json=body).json()["id"]
    wait_for_status(bob, task_id, {"failed"}, timeout_s=20)
    # When bob opens the dead-letter page, it lists the task with a box to tick, and one Redrive button
    user = console("bob")
    page = user.get("/ui/dlq", group="team-b")
    assert page.status_code == 200
    assert f'name="pick" value="team-b:{task_id}"' in page.text
    assert page.text.count(">Redrive</button>") == 1
    # And redriving the ticked task first shows the dry run's count, changing nothing
    dry = user.post("/ui/dlq/redrive", {"group": "team-b", "type": "", "pick": f"team-b:{task_id}"})
    assert "A dry run found <strong>1 task</strong> to redrive" in dry.text
    assert bob.get(f"/v1/tasks/{task_id}").json()["status"] == "failed"
    # And confirmed, the task runs again, redriven by bob, and the page says how many
    done = user.post("/ui/dlq/redrive", [("confirm", "yes"), ("group", "team-b"), ("pick", f"team-b:{task_id}")])
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/dlq?group=team-b&redriven=1"
    events = bob.get(f"/v1/tasks/{task_id}/events").json()["items"]
    assert [e["actor"] for e in events if e["type"] == "redriven"] == ["bob"]
    # And alice's console never lists it
    assert task_id not in console("alice").get("/ui/dlq").text
