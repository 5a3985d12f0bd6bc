"""Per-group access control over every endpoint, table-driven (issue 5, acceptance 1), and the audit trail.

alice (team-a) can never read, list, update, cancel, redrive or see the runs, log or events of a team-b task:
a task outside her groups answers 404 (its existence is not revealed), a group-level request 403. bob (team-b),
carol (team-a and team-b) and admin (every group) can, and every change they make names them in the history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import wait_for_status
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

FAR_FUTURE = {"at": "2099-01-01T00:00:00Z"}
ALLOWED = ("bob", "carol", "admin")


def make(api: httpx.Client, kind: str) -> dict[str, Any]:
    """A fresh team-b task, submitted by bob, in the state an endpoint needs."""
    if kind == "waiting":  # scheduled far ahead: can be read, changed and cancelled
        body = {"type": "echo", "group": "team-b", "schedule": FAR_FUTURE}
        return dict(api.post("/v1/tasks", json=body).raise_for_status().json())
    # failed, with one run: can be redriven, and has runs, a log and events
    body = {"type": "script", "group": "team-b", "payload": {"argv": ["false"]}, "retry": {"max_retries": 0}}
    task_id = api.post("/v1/tasks", json=body).raise_for_status().json()["id"]
    return wait_for_status(api, task_id, {"failed"}, timeout_s=30)


def first_run(api: httpx.Client, task_id: str) -> str:
    return str(api.get(f"/v1/tasks/{task_id}/runs").json()["items"][0]["run_id"])


@dataclass(frozen=True)
class Case:
    """One endpoint: the task it needs, the request, and what an allowed caller gets."""

    name: str
    needs: str | None  # "waiting", "failed", or None (a group-level request)
    request: Callable[[dict[str, Any], str], tuple[str, str, dict[str, Any] | None]]
    allowed_status: int
    denied_status: int = 404  # a task outside the caller's groups is not found

    def call(self, api: httpx.Client, task: dict[str, Any], run_id: str) -> httpx.Response:
        method, path, body = self.request(task, run_id)
        return api.request(method, path, json=body)


CASES = [
    Case("read", "waiting", lambda t, _: ("GET", f"/v1/tasks/{t['id']}", None), 200),
    Case("update", "waiting", lambda t, _: ("PATCH", f"/v1/tasks/{t['id']}", {"payload": {"new": 1}}), 200),
    Case("cancel", "waiting", lambda t, _: ("DELETE", f"/v1/tasks/{t['id']}", None), 200),
    Case("runs", "failed", lambda t, _: ("GET", f"/v1/tasks/{t['id']}/runs", None), 200),
    Case("log", "failed", lambda t, r: ("GET", f"/v1/tasks/{t['id']}/runs/{r}/log", None), 200),
    Case("events", "failed", lambda t, _: ("GET", f"/v1/tasks/{t['id']}/events", None), 200),
    Case("redrive", "failed", lambda t, _: ("POST", f"/v1/tasks/{t['id']}/redrive", None), 200),
    Case("list", None, lambda t, _: ("GET", "/v1/tasks?group=team-b", None), 200, 403),
    Case("submit", None, lambda t, _: ("POST", "/v1/tasks", {"type": "echo", "group": "team-b"}), 201, 403),
    Case("dlq", None, lambda t, _: ("GET", "/v1/dlq?group=team-b", None), 200, 403),
    Case("dlq redrive", None, lambda t, _: ("POST", "/v1/dlq/redrive", {"group": "team-b", "dry_run": True}), 200, 403),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_alice_is_denied_and_every_member_or_admin_is_allowed(
    case: Case, client: Callable[[str], httpx.Client]
) -> None:
    bob, alice = client("bob"), client("alice")
    for user in ("alice", *ALLOWED):
        # A fresh task per caller, so each allowed change starts from the same state.
        task = make(bob, case.needs) if case.needs else {}
        run_id = first_run(bob, task["id"]) if case.needs == "failed" else "1.1"
        before = bob.get(f"/v1/tasks/{task['id']}").json() if task else None
        response = case.call(client(user), task, run_id)
        if user == "alice":
            assert response.status_code == case.denied_status, (case.name, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            if task:  # nothing about the task leaks, and nothing changed
                # answered exactly as for a task that does not exist: nothing reveals it (or its group)
                assert response.json()["type"].endswith("not-found")
                assert "team-b" not in response.text
                assert bob.get(f"/v1/tasks/{task['id']}").json()["version"] == before["version"]  # type: ignore[index]
        else:
            assert response.status_code == case.allowed_status, (case.name, user, response.text)
    # alice's own group is hers: the same request into team-a is allowed (the denial is about the group).
    assert alice.get("/v1/tasks?group=team-a").status_code == 200


def test_alice_lists_only_team_a_carol_both_groups_merged_and_admin_every_group(
    client: Callable[[str], httpx.Client],
) -> None:
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    mine = alice.post("/v1/tasks", json={"type": "echo", "group": "team-a", "schedule": FAR_FUTURE}).json()["id"]
    theirs = bob.post("/v1/tasks", json={"type": "echo", "group": "team-b", "schedule": FAR_FUTURE}).json()["id"]
    seen_by_alice = {t["id"] for t in alice.get("/v1/tasks", params={"limit": 200}).json()["items"]}
    assert mine in seen_by_alice
    assert theirs not in seen_by_alice
    assert {t["group"] for t in alice.get("/v1/tasks", params={"limit": 200}).json()["items"]} == {"team-a"}
    newest = [t["id"] for t in carol.get("/v1/tasks", params={"limit": 2}).json()["items"]]
    assert newest == [theirs, mine]
    # admin, naming no group, sees every group's tasks
    everything = [t["id"] for t in client("admin").get("/v1/tasks", params={"limit": 2}).json()["items"]]
    assert everything == [theirs, mine]


def test_every_change_names_its_actor_in_the_history(client: Callable[[str], httpx.Client]) -> None:
    bob, carol, admin = client("bob"), client("carol"), client("admin")
    task = make(bob, "waiting")
    carol.patch(f"/v1/tasks/{task['id']}", json={"priority": "high"}).raise_for_status()
    admin.delete(f"/v1/tasks/{task['id']}").raise_for_status()
    events = bob.get(f"/v1/tasks/{task['id']}/events").json()["items"]
    actors = {e["type"]: e["actor"] for e in events}
    assert (actors["submitted"], actors["updated"], actors["cancelled"]) == ("bob", "carol", "admin")
    failed = make(bob, "failed")
    admin.post(f"/v1/tasks/{failed['id']}/redrive").raise_for_status()
    redriven = [e for e in bob.get(f"/v1/tasks/{failed['id']}/events").json()["items"] if e["type"] == "redriven"]
    assert [e["actor"] for e in redriven] == ["admin"]


def test_the_queues_are_visible_to_any_authenticated_caller_and_to_nobody_else(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    queues = client("alice").get("/v1/queues")
    assert queues.status_code == 200
    assert [q["priority"] for q in queues.json()["queues"]] == ["high", "normal", "low"]
    anonymous = httpx.get(f"{stack.url}/v1/queues", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
