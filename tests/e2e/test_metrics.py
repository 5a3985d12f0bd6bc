"""Every service's ``/metrics`` after a known workload (issue 6, acceptance 2): the test parses the values."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import TOKENS, running_stack, wait_for_status

# infra/pulumi is not a Pants source (its SDKs): Pants infers no dependency on it.
from tq_infra.aws_calls import Operation, operations_of  # pants: no-infer-dep
from tqdev.metrics import scrape, value
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e
#: The calls a submit's write is made with (alone, or shared with concurrent submits).
WRITE_CALLS = ("PutItem", "TransactWriteItems")

GROUP = "team-a"
ECHOES = 80
DOOMED = 20  # fail every attempt: 2 attempts each (max_retries 1), then dead-lettered
DELAYED = 1


def total(stack: Stack, names: list[str], metric: str, **labels: str) -> float:
    """``metric`` summed over several processes' /metrics."""
    return sum(value(scrape(stack.metrics_url(name)), metric, **labels) for name in names)


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Two executors; the reaper reads its gauges afresh at every scrape."""
    with running_stack(emulator, tmp_path_factory.mktemp("metrics"), env={"TQ_GAUGES_TTL_S": "0"}) as started:
        yield started


def test_counters_histograms_and_gauges_after_100_tasks_some_dead_lettered(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    alice = client("alice")
    # Given 80 tasks that succeed (20 of them high priority), 20 that fail every attempt, and one run later
    ids = []
    for n in range(ECHOES):
        body = {"type": "echo", "group": GROUP, "payload": {"n": n}, "priority": "high" if n < 20 else "normal"}
        ids.append(alice.post("/v1/tasks", json=body).raise_for_status().json()["id"])
    retry = {"max_retries": 1, "backoff_base_s": 0.2, "backoff_max_s": 0.2}
    for _ in range(DOOMED):
        body = {"type": "flaky", "group": GROUP, "payload": {"fail_times": 9}, "retry": retry}
        ids.append(alice.post("/v1/tasks", json=body).raise_for_status().json()["id"])
    at = (datetime.now(UTC) + timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    body = {"type": "echo", "group": GROUP, "schedule": {"at": at}}
    ids.append(alice.post("/v1/tasks", json=body).raise_for_status().json()["id"])
    # When all of them have ended
    for task_id in ids:
        wait_for_status(alice, task_id, {"succeeded", "failed"}, timeout_s=60)

    # Then the gateway counted 101 accepted submits, by type and priority, and timed each
    gateway = scrape(stack.metrics_url("gateway"))
    assert value(gateway, "tq_tasks_submitted_total", type="echo", priority="high") == 20
    assert value(gateway, "tq_tasks_submitted_total", type="echo", priority="normal") == ECHOES - 20 + DELAYED
    assert value(gateway, "tq_tasks_submitted_total", type="flaky", priority="normal") == DOOMED
    accepted = ECHOES + DOOMED + DELAYED
    assert value(gateway, "tq_http_requests_total", method="POST", route="/v1/tasks", code="201") == accepted
    assert value(gateway, "tq_submit_duration_seconds_count") == accepted
    assert value(gateway, "tq_http_requests_total", route="/v1/tasks/{task_id}", code="200") > 0
    # (each submit is one write of its task item: a PutItem alone, or shared with up to 99 others in a transaction;
    # presence and the groups record add PutItems of their own)
    writes = sum(value(gateway, "tq_aws_calls_total", service="dynamodb", operation=op) for op in WRITE_CALLS)
    assert writes >= accepted / 100

    # ... the executors counted every outcome (summed over both processes), and timed every attempt
    executors = ["executor-1", "executor-2"]
    assert total(stack, executors, "tq_tasks_succeeded_total", type="echo") == ECHOES + DELAYED
    assert total(stack, executors, "tq_tasks_failed_total", type="flaky") == 2 * DOOMED
    assert total(stack, executors, "tq_tasks_retried_total", type="flaky") == DOOMED
    assert total(stack, executors, "tq_tasks_dead_lettered_total", type="flaky", priority="normal") == DOOMED
    attempts = ECHOES + DELAYED + 2 * DOOMED
    assert total(stack, executors, "tq_queue_wait_seconds_count") == attempts
    assert total(stack, executors, "tq_queue_wait_seconds_count", priority="high") == 20
    assert total(stack, executors, "tq_run_duration_seconds_count", type="flaky", outcome="failed") == 2 * DOOMED
    assert total(stack, executors, "tq_run_duration_seconds_count", outcome="succeeded") == ECHOES + DELAYED
    assert total(stack, executors, "tq_attempts_in_progress") == 0

    # ... the scheduler promoted the delayed run and the 20 retries, and says how late
    scheduler = scrape(stack.metrics_url("scheduler"))
    assert value(scheduler, "tq_scheduler_lag_seconds_count") == DELAYED + DOOMED
    assert value(scheduler, "tq_scheduler_lag_seconds_sum") < 5 * (DELAYED + DOOMED)
    assert time.time() - value(scheduler, "tq_scheduler_last_pass_timestamp_seconds") < 10

    # ... and the reaper's gauges show the DLQ holding the 20, empty queues and the live replicas
    reaper = scrape(stack.metrics_url("reaper"))
    assert value(reaper, "tq_dead_lettered_tasks", group=GROUP) == DOOMED
    for priority in ("high", "normal", "low"):
        assert value(reaper, "tq_queue_depth", priority=priority) == 0
        assert value(reaper, "tq_oldest_queued_task_age_seconds", priority=priority) == 0
        # SQS's dead-letter queue holds a record of each task that ran out of retries, visible until the
        # reaper's next pass hides it
        assert 0 <= value(reaper, "tq_dlq_depth", priority=priority) <= (DOOMED if priority == "normal" else 0)
    assert value(reaper, "tq_replicas_alive", service="executor") == 2
    assert value(reaper, "tq_replicas_alive", service="scheduler") == 1
    assert value(reaper, "tq_lease_reclaims_total") == 0


def test_every_aws_call_a_process_made_is_one_its_task_role_allows(stack: Stack) -> None:
    # Given the stack after the workload above (each process counts the AWS calls it made, by operation)
    made: dict[str, set[Operation]] = {}
    for service, url in stack.metrics_urls().values():
        for (metric, labels), count in scrape(url).items():
            if metric == "tq_aws_calls_total" and count > 0:
                found = dict(labels)
                made.setdefault(service, set()).add(Operation(found["service"], found["operation"]))
    # Then every one is among the calls infra/pulumi derives from that service's code (its task role allows
    # exactly those): a call the derivation missed would be AccessDenied on AWS
    assert set(made) == {"gateway", "executor", "scheduler", "reaper"}
    for service, operations in made.items():
        assert operations <= operations_of(service), (service, sorted(operations - operations_of(service)))
    assert Operation("dynamodb", "PutItem") in made["gateway"]
    assert Operation("sqs", "ReceiveMessage") in made["executor"]


def test_queue_depth_and_oldest_queued_age_while_no_executor_runs(emulator: str, tmp_path: Path) -> None:
    # Given a stack with no executor, and three tasks waiting
    with running_stack(emulator, tmp_path / "run", executors=0, env={"TQ_GAUGES_TTL_S": "0"}) as stack:
        with httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {TOKENS['bob']}"}) as bob:
            for priority in ("low", "low", "high"):
                body = {"type": "echo", "group": "team-b", "priority": priority}
                bob.post("/v1/tasks", json=body).raise_for_status()
        submitted = time.time()
        time.sleep(2)
        # When the reaper is scraped
        reaper = scrape(stack.metrics_url("reaper"))
        # Then it shows them queued (SQS counts are approximate, but exact on an idle emulator), and their age
        assert value(reaper, "tq_queue_depth", priority="low") == 2
        assert value(reaper, "tq_queue_depth", priority="high") == 1
        assert value(reaper, "tq_replicas_alive", service="executor") == 0
        age = value(reaper, "tq_oldest_queued_task_age_seconds", priority="low")
        assert 2 <= age <= time.time() - submitted + 1
        assert value(reaper, "tq_oldest_queued_task_age_seconds", priority="normal") == 0


def test_the_overview_sums_what_the_live_instances_reported_after_the_workload(
    client: Callable[[str], httpx.Client], stack: Stack
) -> None:
    # Given the workload above, ended (each instance's next heartbeat, within 5 s, carries its counts)
    alice = client("alice")
    expected = {"succeeded": ECHOES + DELAYED, "failed": 2 * DOOMED, "fired": DELAYED + DOOMED}
    deadline = time.monotonic() + 20
    while True:
        overview = alice.get("/v1/overview").raise_for_status().json()
        done = {key: sum(minute[key] for minute in overview["throughput"]) for key in expected}
        if done == expected or time.monotonic() > deadline:
            break
        time.sleep(1)
    # Then the overview's throughput is what the executors finished and the scheduler fired, no more, no less
    assert done == expected
    # ... its lag and last pass are the scheduler's, the replicas the live ones, the executors those of the pool
    assert 0 <= overview["scheduler"]["lag_s"] < 5
    assert overview["scheduler"]["last_pass_age_s"] < 10
    assert overview["replicas"]["executor"] == 2
    assert (overview["replicas"]["scheduler"], overview["replicas"]["reaper"]) == (1, 1)
    assert overview["replicas"]["gateway"] >= 1
    [pool] = overview["pools"]
    assert (pool["name"], pool["executors"]) == ("default", 2)
    assert all(queue["depth"] == 0 and queue["oldest_age_s"] is None for queue in pool["queues"])
    # ... and alice's dead letters are the 20 doomed tasks; bob's group has none of them
    assert overview["dead_letters"] == {GROUP: DOOMED}
    assert client("bob").get("/v1/overview").json()["dead_letters"] == {"team-b": 0}
    # The console's overview renders the same over the real stack, signed in through a session cookie
    with httpx.Client(base_url=stack.url, timeout=10) as console:
        signed_in = console.post("/ui/session", data={"token": TOKENS["alice"]}, headers={"Origin": stack.url})
        assert signed_in.status_code == 303, signed_in.text
        page = console.get("/ui/")
    assert page.status_code == 200
    assert "<h1>Overview</h1>" in page.text
    assert 'href="/ui/dlq?group=team-a"' in page.text
