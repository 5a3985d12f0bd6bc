"""Rate limiting: the GCRA math, the shared bucket table (also from two processes), and the middleware."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import falcon.testing
import pytest

from tq_gateway.buckets import PROBE_SLOTS, SharedBuckets, create_table, gcra
from tq_gateway.ratelimit import Replicas
from tq_gateway.settings import GatewaySettings
from tq_gateway.testing import client_over_fakes
from tqcore.testing import InMemoryRegistry

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
BOB = {"Authorization": "Bearer dev-bob"}


# --- GCRA: a token bucket of size b refilled at r per second -------------------------------------------------


def admitted(times: list[float], rate: float, burst: float) -> int:
    tat, count = 0.0, 0
    for now in times:
        decision = gcra(tat, now, rate, burst)
        if decision.allowed:
            tat, count = decision.tat, count + 1
    return count


def test_a_full_bucket_admits_the_burst_at_once_then_refuses() -> None:
    assert admitted([100.0] * 50, rate=20, burst=20) == 20
    assert admitted([100.0] * 50, rate=0.5, burst=1) == 1


def test_a_refusal_says_when_the_next_token_arrives() -> None:
    tat = 0.0
    for _ in range(4):
        tat = gcra(tat, 10.0, 2, 4).tat
    refused = gcra(tat, 10.0, 2, 4)
    assert not refused.allowed
    assert refused.tat == tat  # a refusal consumes nothing
    assert refused.retry_after_s == pytest.approx(0.5)
    assert gcra(tat, 10.5, 2, 4).allowed


def test_over_a_window_at_most_burst_plus_rate_times_window_get_through() -> None:
    # 1,000 requests/s offered for 3 s against 20/s with a burst of 10
    times = [100 + n / 1000 for n in range(3000)]
    assert admitted(times, rate=20, burst=10) == 10 + 20 * 3 - 1  # the last token arrives exactly at 103.0


def test_a_tat_in_the_past_is_a_full_bucket() -> None:
    assert gcra(5.0, 1000.0, 1, 3) == gcra(0.0, 1000.0, 1, 3)
    assert admitted([1000.0] * 5, rate=1, burst=3) == 3


# --- the shared table -------------------------------------------------------------------------------------------


def test_principals_have_buckets_of_their_own() -> None:
    buckets = SharedBuckets(slots=64)
    assert [buckets.acquire("alice", 1, 2, 10.0).allowed for _ in range(3)] == [True, True, False]  # type: ignore[union-attr]
    assert buckets.acquire("bob", 1, 2, 10.0).allowed  # type: ignore[union-attr]


def test_a_table_of_live_buckets_is_full_until_one_goes_stale() -> None:
    # Given a table no larger than one probe window, every slot held by a principal within its burst
    buckets = SharedBuckets(slots=PROBE_SLOTS)
    for n in range(PROBE_SLOTS):
        assert buckets.acquire(f"p{n}", 1, 5, 10.0) is not None
    # Then one more principal finds no slot
    assert buckets.acquire("newcomer", 1, 5, 10.0) is None
    # and once the others' buckets are full again (TAT in the past) their slots are reused
    for _ in range(4):
        assert buckets.acquire("p5", 1, 5, 11.5).allowed  # type: ignore[union-attr]
    assert buckets.acquire("newcomer", 1, 5, 12.0) is not None
    # while a principal still within its burst keeps its slot (and its debt), never getting a second one
    assert [buckets.acquire("p5", 1, 5, 12.0).allowed for _ in range(3)] == [True, False, False]  # type: ignore[union-attr]


def _hammer(path: str, start: Any, attempts: int, now: float | None, rate: float, burst: float, out: Any) -> None:
    buckets = SharedBuckets(path)
    accepted = 0
    start.wait()
    first = time.monotonic()
    for _ in range(attempts):
        decision = buckets.acquire("alice", rate, burst, time.monotonic() if now is None else now)
        accepted += bool(decision and decision.allowed)
    out.put((accepted, first, time.monotonic()))


def _run_two(path: str, attempts: int, now: float | None, rate: float, burst: float) -> list[tuple[int, float, float]]:
    context = multiprocessing.get_context("fork")
    out, start = context.Queue(), context.Event()
    args = (path, start, attempts, now, rate, burst, out)
    procs = [context.Process(target=_hammer, args=args) for _ in range(2)]
    for proc in procs:
        proc.start()
    start.set()  # both at once, so their read-modify-writes really interleave
    results = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=10)
        assert proc.exitcode == 0
    return results


def test_two_processes_share_one_bucket_exactly(tmp_path: Path) -> None:
    # Given one table file, and two processes each trying 30,000 times for one principal at one instant (no
    # refill), against a burst of 20,000: long enough for their updates to interleave (without the file lock
    # both get nearly everything through)
    path = str(tmp_path / "table")
    create_table(path, 1024)
    results = _run_two(path, attempts=30_000, now=1e9, rate=1, burst=20_000)
    # Then exactly the burst got through between them
    assert sum(accepted for accepted, _, _ in results) == 20_000, results


def test_two_processes_over_time_get_burst_plus_rate_times_window(tmp_path: Path) -> None:
    path = str(tmp_path / "table")
    create_table(path, 1024)
    results = _run_two(path, attempts=20_000, now=None, rate=200, burst=20)
    window_s = max(last for _, _, last in results) - min(first for _, first, _ in results)
    expected = 20 + 200 * window_s
    assert abs(sum(accepted for accepted, _, _ in results) - expected) <= 3, (results, expected)


# --- the middleware ---------------------------------------------------------------------------------------------


def client(replicas: Replicas | None = None, **settings: Any) -> falcon.testing.TestClient:
    return client_over_fakes(GatewaySettings(**settings), replicas=replicas)


def statuses(api: falcon.testing.TestClient, n: int, headers: dict[str, str]) -> list[int]:
    return [api.simulate_get("/v1/tasks/t-1", headers=headers).status_code for _ in range(n)]


def test_over_the_limit_is_a_429_problem_with_retry_after() -> None:
    api = client(rate_limit_rps=0.01, rate_limit_burst=2)
    assert statuses(api, 2, ALICE) == [404, 404]
    refused = api.simulate_get("/v1/tasks/t-1", headers=ALICE)
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json["type"] == "urn:tq:problem:rate-limited"
    assert int(refused.headers["retry-after"]) == refused.json["retry_after_s"] >= 99
    # Other principals and the public paths are not affected
    assert statuses(api, 2, BOB) == [404, 404]
    assert api.simulate_get("/healthz").status_code == 200
    assert api.simulate_get("/openapi.json").status_code == 200


def test_retry_after_is_a_whole_second_at_least() -> None:
    # A refusal at 1,000/s is due again within a millisecond: still "Retry-After: 1", never 0
    api = client(rate_limit_rps=1000, rate_limit_burst=1)
    responses = [api.simulate_get("/v1/tasks/t-1", headers=ALICE) for _ in range(50)]
    refused = [r for r in responses if r.status_code == 429]
    assert refused
    assert {r.headers["retry-after"] for r in refused} == {"1"}


def test_unauthenticated_requests_are_refused_before_the_limit() -> None:
    api = client(rate_limit_rps=0.01, rate_limit_burst=1)
    assert [api.simulate_get("/v1/tasks/t-1").status_code for _ in range(3)] == [401] * 3
    assert statuses(api, 2, ALICE) == [404, 429]


def test_a_rate_of_zero_switches_the_limit_off() -> None:
    assert set(statuses(client(rate_limit_rps=0, rate_limit_burst=1), 20, ALICE)) == {404}


def test_each_replica_takes_its_share_of_the_burst() -> None:
    replicas = Replicas()
    replicas.count = 2
    assert statuses(client(replicas, rate_limit_rps=0.01, rate_limit_burst=6), 4, ALICE) == [404] * 3 + [429]


# --- replicas ---------------------------------------------------------------------------------------------------


class BrokenRegistry(InMemoryRegistry):
    """A registry that cannot be reached."""

    def alive(self) -> dict[str, list[str]]:
        raise ConnectionError("unreachable (fake)")


def test_replicas_are_the_live_gateway_instances_not_workers() -> None:
    registry = InMemoryRegistry()
    # Two workers of one master beat one instance; another host beats its own
    for instance in ("host-a:100", "host-a:100", "host-b:7"):
        registry.heartbeat("gateway", instance, ttl_s=30)
    registry.heartbeat("executor", "host-a:200", ttl_s=30)
    replicas = Replicas(registry)
    replicas.refresh()
    assert replicas.count == 2


def test_an_unreachable_registry_keeps_the_last_count() -> None:
    replicas = Replicas(BrokenRegistry())
    replicas.count = 3
    replicas.refresh()
    assert replicas.count == 3
    assert Replicas(InMemoryRegistry()).count == 1
