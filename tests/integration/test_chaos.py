"""Chaos: 2,000 tasks while executors are SIGKILLed every 3 s. Nothing is lost, no attempt runs twice.

Run again with 500 tasks while 5% of every AWS call fails (throttles, 500s, connections reset before the call
reaches AWS or after AWS applied it), through tqdev.faults' proxy. Also `make chaos`. Figures (counts,
durations, kills, faults) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import executions, start_stack
from tqdev.faults import Fault, FaultProxy, Rule

pytestmark = [pytest.mark.integration, pytest.mark.volume, pytest.mark.chaos]

TASKS = int(os.environ.get("TQ_CHAOS_TASKS", "2000"))
#: The run with injected faults is shorter (it is about the faults): fewer tasks, and the kills stop after
#: ``FAULT_CHAOS_S`` (then the tasks left, if any, settle with the faults still on).
FAULT_TASKS = int(os.environ.get("TQ_CHAOS_FAULT_TASKS", "300"))
FAULT_CHAOS_S = 150
#: Share of AWS calls that fail in the run with faults.
FAULT_SHARE = 0.05
#: How each service refuses for throughput, and fails inside (botocore retries all of them, and resets).
THROTTLES = {
    "dynamodb": Fault.error("ProvisionedThroughputExceededException"),
    "sqs": Fault.error("ThrottlingException"),
    "s3": Fault.error("SlowDown", status=503),
}
INTERNAL_ERRORS = {
    "dynamodb": Fault.error("InternalServerError", status=500),
    "sqs": Fault.error("InternalError", status=500),
    "s3": Fault.error("InternalError", status=500),
}
KILL_EVERY_S = 3.0
#: The fewest executors a run kills, however fast its tasks are seen.
MIN_KILLS = 3
DEADLINE_S = 420
CHAOS_ENV = {
    "TQ_LEASE_S": "6",
    "TQ_HEARTBEAT_S": "2",
    "TQ_REAPER_INTERVAL_S": "1",
    "TQ_RESEND_AFTER_S": "10",
}


def script(n: int) -> dict[str, Any]:
    """A task whose output goes to its run log in S3 (the run with faults adds some: S3 calls to fault)."""
    retry = {"max_retries": 20, "backoff_base_s": 0.5}
    return {"type": "script", "group": "team-a", "payload": {"argv": ["echo", "chaos", str(n)]}, "retry": retry}


def body(n: int, rng: random.Random) -> dict[str, Any]:
    kind = n % 3
    # Generous budgets for echo and sleep: only flaky tasks are meant to run out of retries.
    if kind == 0:
        return {
            "type": "echo",
            "group": "team-a",
            "payload": {"n": n},
            "retry": {"max_retries": 20, "backoff_base_s": 0.5},
        }
    if kind == 1:
        payload = {"seconds": round(rng.uniform(0, 2), 2)}
        return {
            "type": "sleep",
            "group": "team-a",
            "payload": payload,
            "retry": {"max_retries": 20, "backoff_base_s": 0.5},
        }
    retry = {"max_retries": 2, "backoff_base_s": 0.5}
    return {"type": "flaky", "group": "team-a", "payload": {"fail_times": rng.randint(0, 3)}, "retry": retry}


def inject_faults(proxy: FaultProxy) -> list[Rule]:
    """Four kinds of fault (a throttle, a 500, a reset before and one after forwarding), each picking the same
    share of the calls that reach it, so that ``FAULT_SHARE`` of all calls fail."""
    each = 1 - (1 - FAULT_SHARE) ** (1 / 4)
    rules = [
        proxy.inject(fault, service=service, probability=each)
        for kind in (THROTTLES, INTERNAL_ERRORS)
        for service, fault in kind.items()
    ]
    for fault in (Fault.reset(), Fault.reset(after_forward=True)):
        rules.append(proxy.inject(fault, probability=each))
    return rules


@contextlib.contextmanager
def endpoint(emulator: str, faults: bool) -> Iterator[tuple[str, FaultProxy | None]]:
    """The emulator's URL, or (with ``faults``) a fault proxy's in front of it."""
    if not faults:
        yield emulator, None
        return
    with FaultProxy(upstream=emulator, seed=20261202) as proxy:
        yield proxy.url, proxy


@pytest.mark.parametrize(
    ("faults", "tasks", "chaos_s"),
    [(False, TASKS, DEADLINE_S), (True, FAULT_TASKS, FAULT_CHAOS_S)],
    ids=["plain", "faults"],
)
@pytest.mark.timeout(DEADLINE_S + 180 + 60)  # its own bounds: the chaos, the settling, start and stop
def test_tasks_survive_executors_killed_every_three_seconds(
    emulator: str, tmp_path: Path, faults: bool, tasks: int, chaos_s: float
) -> None:
    with endpoint(emulator, faults) as (url, proxy):
        chaos(url, tmp_path, tasks, chaos_s, proxy)


def chaos(url: str, tmp_path: Path, count: int, chaos_s: float, proxy: FaultProxy | None) -> None:
    """Submit ``count`` tasks and SIGKILL an executor every 3 s until all have run or ``chaos_s`` passed
    (faulting 5% of AWS calls once the stack is up, with a ``proxy``); then check that once settled nothing
    was lost and no attempt ran twice."""
    rng = random.Random(20261123)
    stack = start_stack(url, tmp_path, executors=3, reapers=2, env=CHAOS_ENV)
    rules = inject_faults(proxy) if proxy else []
    kills = booting = 0
    started = time.monotonic()
    try:
        with httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=30) as api:
            bodies = [body(n, rng) for n in range(count)]
            bodies += [script(n) for n in range(count // 10 if proxy else 0)]
            with ThreadPoolExecutor(8) as pool:
                responses = list(pool.map(lambda b: api.post("/v1/tasks", json=b), bodies))
            assert [r.status_code for r in responses] == [201] * len(bodies)
            ids = [r.json()["id"] for r in responses]
            spec = dict(zip(ids, bodies, strict=True))
            noted = set(ids[:count])  # the demo handlers note their calls (the script type may not)
            submitted_s = time.monotonic() - started

            seen_at: dict[str, float] = {}  # when the handlers first saw each task (s since the start)

            def finished() -> int:
                now = time.monotonic() - started
                for task_id, _ in executions(stack):
                    if task_id in noted:
                        seen_at.setdefault(task_id, now)
                return len(seen_at)

            # Every 3 s: SIGKILL a random live executor and start a new one, until the handlers have seen
            # every task and at least MIN_KILLS executors died (then stop the chaos and let retries and reclaims
            # settle): a quick run still loses executors while retries and reclaims are under way.
            next_kill = time.monotonic() + KILL_EVERY_S
            next_note, progress = time.monotonic() + 30, []
            while (finished() < count or kills < MIN_KILLS) and time.monotonic() - started < chaos_s:
                if time.monotonic() >= next_note:
                    progress.append(f"{time.monotonic() - started:.0f} s: {finished()}")
                    next_note += 30
                if time.monotonic() >= next_kill:
                    victims = [p for p in stack.executors if p.alive()]
                    victim = rng.choice(victims)
                    # An executor that has logged nothing yet is still starting (slow on a loaded machine).
                    booting += victim.log_path.stat().st_size == 0
                    os.kill(victim.pid, signal.SIGKILL)
                    kills += 1
                    stack.add_executor()
                    next_kill += KILL_EVERY_S
                time.sleep(0.1)
            killed_for_s = time.monotonic() - started

            def final(task_id: str) -> dict[str, Any]:
                return api.get(f"/v1/tasks/{task_id}").json()

            deadline = time.monotonic() + 180
            while True:
                with ThreadPoolExecutor(8) as pool:
                    tasks = list(pool.map(final, ids))
                unfinished = [t for t in tasks if t["status"] not in ("succeeded", "failed")]
                if not unfinished or time.monotonic() > deadline:
                    break
                time.sleep(2)
            total_s = time.monotonic() - started
            finished()
            last = max(noted, key=lambda task_id: seen_at.get(task_id, float("inf")))
            story = api.get(f"/v1/tasks/{last}/events")  # faults may refuse it: then its status is shown
            last_story = Counter(e["type"] for e in story.json()["items"]) if story.is_success else story.status_code
            # Each script's output reached S3 (faults and all) and reads back whole
            logs = {
                t["id"]: api.get(f"/v1/tasks/{t['id']}/runs/1.{t['attempts']}/log")
                for t in tasks
                if spec[t["id"]]["type"] == "script" and t["status"] == "succeeded"
            }
    finally:
        if proxy:
            proxy.clear()  # a clean stop; the figures below count what was injected until now
        stack.stop()

    statuses = Counter(t["status"] for t in tasks)
    ran = executions(stack)
    duplicates = [key for key, times in Counter(ran).items() if times > 1]
    print(
        f"\nchaos: {len(ids)} tasks, {kills} executors SIGKILLed ({booting} still starting), "
        f"submitted in {submitted_s:.0f} s, "
        f"chaos for {killed_for_s:.0f} s, settled in {total_s:.0f} s; statuses {dict(statuses)}; "
        f"handler executions {len(ran)}, attempts beyond the first {sum(t['attempts'] - 1 for t in tasks)}, "
        f"duplicate (task, attempt) executions {len(duplicates)}; tasks run by then: {', '.join(progress)}"
    )
    # What held the last one back (lost attempts, retries, re-sends) when the run is slow
    seen = f"{seen_at[last]:.0f} s" if last in seen_at else "never"
    print(f"last task seen: {last} ({spec[last]['type']}) at {seen}, its events {last_story}")
    if proxy:
        by_service = Counter[str]()
        for (service, _), n in proxy.calls.items():
            by_service[service] += n
        calls = sum(by_service.values())
        by_kind = Counter[str]()
        for rule in rules:
            by_kind[f"{rule.service or 'all'} {rule.fault.label}"] += rule.hits
        print(
            f"faults: {sum(by_kind.values())} of {calls} AWS calls ({sum(by_kind.values()) / calls:.1%}): "
            f"{dict(by_kind)}; calls by service {dict(by_service)}"
        )
    # None is lost: every task ended succeeded, or failed because flaky exceeded its budget
    assert not unfinished, [(t["id"], t["status"]) for t in unfinished[:5]]
    for task in tasks:
        if task["status"] == "failed":
            assert spec[task["id"]]["type"] == "flaky", task
            assert task["attempts"] == spec[task["id"]]["retry"]["max_retries"] + 1
    # flaky tasks that needed no more attempts than their budget allows all succeeded
    for task in tasks:
        wanted = spec[task["id"]]
        if wanted["type"] == "flaky" and wanted["payload"]["fail_times"] == 0 and task["attempts"] == 1:
            assert task["status"] == "succeeded"
    for task_id, log in logs.items():
        assert log.status_code == 200, (task_id, log.text)
        assert log.text == f"chaos {spec[task_id]['payload']['argv'][2]}\n"
    # and no (task, attempt) was executed twice
    assert not duplicates, duplicates[:5]
    assert kills >= MIN_KILLS
