"""Scheduled and repeating tasks over HTTP, on the composed stack: on time, never twice, never missing."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.conftest import MOTO_TRANSACTIONS_NOT_ATOMIC, ConsoleUser, executed_runs, executions, wait_for_status
from tqdev.metrics import scrape, value
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

ECHO = {"type": "echo", "group": "team-a"}


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def runs(api: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    """Every run of a task, oldest first."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = api.get(f"/v1/tasks/{task_id}/runs", params={"limit": 200, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items[::-1]


def events(api: httpx.Client, task_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in api.get(f"/v1/tasks/{task_id}/events").json()["items"] if e["type"] == kind]


def scheduler_metric(stack: Stack, name: str, **labels: str) -> float:
    """A counter summed over the stack's running scheduler processes (scraped from their /metrics)."""
    urls = [url for service, url in stack.metrics_urls().values() if service == "scheduler"]
    return sum(value(scrape(url), name, **labels) for url in urls)


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def cancel(api: httpx.Client, task_id: str) -> dict[str, Any]:
    """DELETE the task and wait until it is cancelled (a running attempt finishes first)."""
    response = api.delete(f"/v1/tasks/{task_id}")
    assert response.status_code == 200, response.text
    return wait_for_status(api, task_id, {"cancelled"}, timeout_s=15)


def test_a_one_shot_task_starts_within_a_second_after_its_time_never_before(
    client: Callable[[str], httpx.Client],
) -> None:
    alice = client("alice")
    ids_and_times = []
    # Given three tasks for a few seconds from now (at different fractions of a second)
    for offset_s in (3.0, 3.37, 3.71):
        at = datetime.now(UTC) + timedelta(seconds=offset_s)
        created = alice.post("/v1/tasks", json={**ECHO, "schedule": {"at": at.isoformat()}})
        assert created.status_code == 201, created.text
        assert created.json()["status"] == "scheduled"
        ids_and_times.append((created.json()["id"], ts(created.json()["next_run_at"])))
    # Then each starts at or after its time, and less than a second after it
    for task_id, at in ids_and_times:
        done = wait_for_status(alice, task_id, {"succeeded", "failed"}, timeout_s=10)
        assert done["status"] == "succeeded"
        late_s = (ts(done["started_at"]) - at).total_seconds()
        assert 0 <= late_s < 1.0, late_s
        assert runs(alice, task_id)[0]["scheduled_for"] == at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.slow  # ministack only: the cadence is what is tested, and it takes 10-25 s
def test_an_every_2_s_task_runs_at_least_9_times_in_20_s_and_no_slot_twice(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    alice = client("alice")
    created = alice.post("/v1/tasks", json={**ECHO, "payload": {"n": 2}, "schedule": {"every_s": 2}})
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    time.sleep(20)
    done = cancel(alice, task_id)
    history = [r for r in runs(alice, task_id) if r["status"] == "succeeded"]
    # Then it ran at least 9 times, each for its own slot, two seconds apart, once each
    assert len(history) >= 9, [r["scheduled_for"] for r in history]
    slots = [ts(r["scheduled_for"]) for r in history]
    assert len(set(slots)) == len(slots)
    assert all((b - a).total_seconds() == pytest.approx(2.0) for a, b in itertools.pairwise(slots))
    # and each started within a second of its slot
    assert all(0 <= (ts(r["started_at"]) - ts(r["scheduled_for"])).total_seconds() < 1 for r in history)
    # and the handlers themselves ran each run exactly once
    executed = executed_runs(stack, task_id)
    assert len(executed) == len(set(executed)) == done["run_count"]
    assert done["run_count"] >= len(history)


def test_a_paused_task_runs_no_slot_and_resumed_runs_again_with_the_missed_slots_recorded(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    alice = client("alice")
    # Given an every-second task that has run
    task_id = alice.post("/v1/tasks", json={**ECHO, "schedule": {"every_s": 1}}).json()["id"]
    wait_for(lambda: len(executed_runs(stack, task_id)) >= 1, 10, "a first run")
    # When alice pauses it, it is paused: at once, or, if an attempt is running, once that attempt has ended
    paused = alice.post(f"/v1/tasks/{task_id}/pause")
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] in {"paused", "running"}
    assert paused.json()["paused_at"] is not None
    wait_for_status(alice, task_id, {"paused"})
    executed = executed_runs(stack, task_id)
    # Then no slot runs for several seconds
    time.sleep(4)
    task = alice.get(f"/v1/tasks/{task_id}").json()
    assert (task["status"], task["next_run_at"]) == ("paused", None)
    assert executed_runs(stack, task_id) == executed
    # When alice resumes it, it waits for its next slot and runs again
    resumed_at = datetime.now(UTC)
    resumed = alice.post(f"/v1/tasks/{task_id}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "scheduled"
    assert ts(resumed.json()["next_run_at"]) > resumed_at - timedelta(seconds=1)
    wait_for(lambda: len(executed_runs(stack, task_id)) > len(executed), 10, "a run after the resume")
    cancel(alice, task_id)
    # And its history shows the pause and the resume by alice, and the slots missed meanwhile as skipped
    (pause_event,) = events(alice, task_id, "paused")
    (resume_event,) = events(alice, task_id, "resumed")
    (skipped,) = [e for e in events(alice, task_id, "run_skipped") if e["data"]["reason"] == "paused"]
    assert (pause_event["actor"], resume_event["actor"], skipped["actor"]) == ("alice", "alice", "alice")
    assert skipped["data"]["count"] >= 3
    assert ts(skipped["data"]["first"]) <= ts(skipped["data"]["last"]) < resumed_at
    # and no run was for a slot while it was paused
    assert not any(
        ts(pause_event["at"]) < ts(r["scheduled_for"]) <= ts(resume_event["at"]) for r in runs(alice, task_id)
    )


@pytest.mark.slow  # ministack only: the cadence is what is tested, and it takes 10-25 s
def test_overlap_skip_never_overlaps_runs_and_records_the_skipped_slots(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    alice = client("alice")
    body = {"type": "sleep", "group": "team-a", "payload": {"seconds": 3}, "schedule": {"every_s": 1}}
    task_id = alice.post("/v1/tasks", json={**body, "overlap": "skip"}).json()["id"]
    time.sleep(11)
    cancel(alice, task_id)
    history = sorted(runs(alice, task_id), key=lambda r: r["started_at"])
    assert len(history) >= 2
    # Then no run started before the previous one finished
    for earlier, later in itertools.pairwise(history):
        assert ts(later["started_at"]) >= ts(earlier["finished_at"]), (earlier, later)
    # and the slots that came due meanwhile were skipped, each recorded as an event
    skipped = [e for e in events(alice, task_id, "run_skipped") if e["data"]["reason"] == "overlap"]
    assert len(skipped) >= 2 * (len(history) - 1)
    run_slots = {r["scheduled_for"] for r in history}
    assert not run_slots & {e["data"]["scheduled_for"] for e in skipped}
    # and counted in the scheduler's metric (read from its multiprocess files, as its exporter will serve them)
    assert scheduler_metric(stack, "tq_schedule_slots_skipped_total", reason="overlap") >= len(skipped)


@pytest.mark.slow  # ministack only: the cadence is what is tested, and it takes 10-25 s
def test_patch_takes_effect_for_the_next_run_and_a_stale_if_match_is_refused(
    client: Callable[[str], httpx.Client],
) -> None:
    alice = client("alice")
    task = alice.post("/v1/tasks", json={**ECHO, "payload": {"v": 1}, "schedule": {"every_s": 1}}).json()
    wait_for(lambda: alice.get(f"/v1/tasks/{task['id']}").json()["run_count"] >= 2, 10, "two runs")
    # When a PATCH names a version that is no longer current
    stale = alice.patch(f"/v1/tasks/{task['id']}", json={"payload": {"v": 99}}, headers={"If-Match": '"1"'})
    # Then it is refused with 412 and nothing changes
    assert stale.status_code == 412, stale.text
    assert stale.headers["content-type"] == "application/problem+json"
    assert alice.get(f"/v1/tasks/{task['id']}").json()["payload"] == {"v": 1}
    # When the payload is changed with the current version (retrying on 412, as the scheduler keeps writing)
    for _ in range(50):
        current = alice.get(f"/v1/tasks/{task['id']}")
        changed = alice.patch(
            f"/v1/tasks/{task['id']}", json={"payload": {"v": 2}}, headers={"If-Match": current.headers["etag"]}
        )
        if changed.status_code != 412:
            break
    assert changed.status_code == 200, changed.text
    assert changed.json()["payload"] == {"v": 2}
    assert changed.headers["etag"] == f'"{changed.json()["version"]}"'
    runs_at_change = changed.json()["run_count"]
    # Then the runs after it use the new payload, without any restart
    wait_for(
        lambda: alice.get(f"/v1/tasks/{task['id']}").json()["run_count"] >= runs_at_change + 2, 10, "two more runs"
    )
    assert alice.get(f"/v1/tasks/{task['id']}").json()["result"] == {"v": 2}
    # When the schedule changes to every 3 s
    rescheduled = alice.patch(f"/v1/tasks/{task['id']}", json={"schedule": {"every_s": 3}})
    assert rescheduled.status_code == 200, rescheduled.text
    time.sleep(1.5)  # a run under way when the change landed finishes on the old cadence
    before = alice.get(f"/v1/tasks/{task['id']}").json()["run_count"]
    time.sleep(7)
    after = alice.get(f"/v1/tasks/{task['id']}").json()["run_count"]
    # Then it runs every 3 s from then on (two or three runs in 7 s, not seven)
    assert 2 <= after - before <= 3, (before, after)
    # And DELETE with a stale version is refused; without If-Match it cancels, and no run follows
    assert alice.delete(f"/v1/tasks/{task['id']}", headers={"If-Match": "1"}).status_code == 412
    final = cancel(alice, task["id"])
    time.sleep(3)
    assert alice.get(f"/v1/tasks/{task['id']}").json()["run_count"] == final["run_count"]
    assert alice.patch(f"/v1/tasks/{task['id']}", json={"payload": {}}).status_code == 409


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "61 * * * *"}, "not a valid five-field cron expression"),
        ({"cron": "* * * *"}, "not a valid five-field cron expression"),
        ({"cron": "0 0 * * *", "timezone": "Mars/Olympus_Mons"}, "not an IANA time zone"),
        ({"every_s": 0.5}, "greater than or equal to 1"),
        ({"cron": "0 0 30 2 *"}, "no run left"),
    ],
)
def test_a_schedule_that_cannot_run_is_refused_with_a_clear_problem(
    client: Callable[[str], httpx.Client], schedule: dict[str, Any], message: str
) -> None:
    response = client("alice").post("/v1/tasks", json={**ECHO, "schedule": schedule})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert message in response.text


def test_a_cron_task_in_a_time_zone_is_scheduled_for_its_next_wall_clock_slot(
    client: Callable[[str], httpx.Client],
) -> None:
    alice = client("alice")
    created = alice.post("/v1/tasks", json={**ECHO, "schedule": {"cron": "0 9 * * MON", "timezone": "Asia/Tokyo"}})
    assert created.status_code == 201, created.text
    task = created.json()
    assert task["status"] == "scheduled"
    local = ts(task["next_run_at"]).astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)
    assert timedelta(0) < ts(task["next_run_at"]) - datetime.now(UTC) <= timedelta(days=7)
    cancel(alice, task["id"])


@MOTO_TRANSACTIONS_NOT_ATOMIC
def test_two_scheduler_replicas_start_each_of_many_simultaneous_tasks_exactly_once(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    alice = client("alice")
    stack.add_scheduler()  # from now on this module's stack runs two scheduler replicas
    at = datetime.now(UTC) + timedelta(seconds=6)
    ids = [
        alice.post("/v1/tasks", json={**ECHO, "payload": {"i": i}, "schedule": {"at": at.isoformat()}}).json()["id"]
        for i in range(100)
    ]
    done = [wait_for_status(alice, task_id, {"succeeded", "failed"}, timeout_s=30) for task_id in ids]
    assert {d["status"] for d in done} == {"succeeded"}
    ran = [task_id for task_id, _ in executions(stack) if task_id in set(ids)]
    assert sorted(ran) == sorted(ids)  # every one ran, none twice
    assert all(ts(d["started_at"]) >= at.replace(microsecond=at.microsecond // 1000 * 1000) for d in done)


@pytest.mark.slow
def test_after_scheduler_downtime_a_repeating_task_runs_once_to_catch_up_then_keeps_its_cadence(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    downtime_s = float(os.environ.get("TQ_TEST_DOWNTIME_S", "25"))  # the 180 s: TQ_TEST_DOWNTIME_S=180
    alice = client("alice")
    task_id = alice.post("/v1/tasks", json={**ECHO, "schedule": {"every_s": 10}}).json()["id"]
    wait_for(lambda: alice.get(f"/v1/tasks/{task_id}").json()["run_count"] >= 1, 10, "the first run")
    # Given the scheduler is down for a while, so several slots pass unseen
    stack.stop_schedulers()
    time.sleep(downtime_s)
    missed_before = alice.get(f"/v1/tasks/{task_id}").json()["run_count"]
    restarted_at = datetime.now(UTC)
    stack.add_scheduler()
    # When it comes back and the task keeps running for two more slots
    time.sleep(23)
    cancel(alice, task_id)
    history = [r for r in runs(alice, task_id) if r["status"] == "succeeded"]
    after = [r for r in history if ts(r["started_at"]) >= restarted_at]
    # Then exactly one catch-up run came first, for the latest missed slot
    catch_up, *cadence = after
    assert ts(catch_up["scheduled_for"]) < restarted_at
    assert (restarted_at - ts(catch_up["scheduled_for"])).total_seconds() < 10
    skipped = [e["data"] for e in events(alice, task_id, "run_skipped") if e["data"]["reason"] == "catch_up"]
    assert len(skipped) == 1
    assert skipped[0]["count"] >= int(downtime_s // 10) - 1
    # and then the normal cadence: one run per slot, every 10 s
    assert 2 <= len(cadence) <= 3
    slots = [ts(r["scheduled_for"]) for r in [catch_up, *cadence]]
    assert all((b - a).total_seconds() == pytest.approx(10.0) for a, b in itertools.pairwise(slots))
    assert len(history) - len(after) == missed_before  # nothing ran while the scheduler was down


def test_the_consoles_schedules_page_lists_a_repeating_task_and_pauses_and_resumes_it(
    client: Callable[[str], httpx.Client], console: Callable[[str], ConsoleUser]
) -> None:
    # Given alice's task every hour from an hour from now, and a one-off task that runs now
    alice = client("alice")
    start = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    schedule = {"every_s": 3600, "start_at": start}
    task_id = alice.post("/v1/tasks", json={**ECHO, "name": "hourly", "schedule": schedule}).json()["id"]
    once = alice.post("/v1/tasks", json=ECHO).json()["id"]
    # When she opens the schedules page (served from the sched index), it lists the repeating task only
    user = console("alice")
    page = user.get("/ui/schedules", group="team-a")
    assert page.status_code == 200
    assert f'href="/ui/tasks/{task_id}"' in page.text
    assert f'href="/ui/tasks/{once}"' not in page.text
    assert "every 3600 s" in page.text
    # And Pause pauses it through the API's use case, with alice as the actor
    assert '<input type="hidden" name="back" value="/ui/schedules?group=team-a">' in page.text
    paused = user.post(f"/ui/tasks/{task_id}/pause", {"back": "/ui/schedules?group=team-a"})
    assert paused.status_code == 303
    assert paused.headers["location"] == "/ui/schedules?group=team-a&done=paused"
    assert alice.get(f"/v1/tasks/{task_id}").json()["status"] == "paused"
    assert ">Resume</button>" in user.get("/ui/schedules", group="team-a").text
    # And Resume resumes it
    assert user.post(f"/ui/tasks/{task_id}/resume", {"back": "/ui/schedules"}).status_code == 303
    assert alice.get(f"/v1/tasks/{task_id}").json()["status"] == "scheduled"
    assert [e["actor"] for e in events(alice, task_id, "paused")] == ["alice"]
    assert [e["actor"] for e in events(alice, task_id, "resumed")] == ["alice"]
    # And bob's console neither lists it nor pauses it
    bob = console("bob")
    assert f"/ui/tasks/{task_id}" not in bob.get("/ui/schedules").text
    assert bob.post(f"/ui/tasks/{task_id}/pause", {"back": "/ui/schedules"}).status_code == 404
    alice.delete(f"/v1/tasks/{task_id}")
