"""Benchmark the console's pages (issue 18): ``GET /ui/tasks`` with 50 rows (target: under 300 ms server time),
filtered, a task page and the schedules page (50 repeating tasks among the others), against ``GET /v1/tasks?limit=50``
and ``GET /v1/schedules?limit=50`` for reference.

Starts ministack and a local stack (gunicorn gateway, scheduler, reaper, no executors), submits ``--tasks`` tasks
(named, with a ~1 KiB payload) in batches, signs in at the console as alice, then times each page over HTTP on
localhost (client-side: an upper bound of the server's time) and reads the gateway's own request-duration
metric (``tq_http_request_duration_seconds``, by route) after each request: what its sum grew by is that request's
server time (p50, p95 and max over the series).

Usage: .venv/bin/python bench/console_pages.py [--tasks 200] [--requests 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tqdev.stack import Stack, benchmark_stack

METRIC = "tq_http_request_duration_seconds"


def server_seconds(client: httpx.Client, route: str) -> tuple[float, float]:
    """The gateway's (sum, count) of request seconds for GET ``route`` (every worker)."""
    total = count = 0.0
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name != METRIC:
            continue
        for sample in family.samples:
            if sample.labels.get("route") == route and sample.labels.get("method") == "GET":
                if sample.name.endswith("_sum"):
                    total += sample.value
                elif sample.name.endswith("_count"):
                    count += sample.value
    return total, count


def percentiles(seconds: list[float]) -> str:
    """p50, p95 and max of ``seconds``, in ms."""
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (
        f"p50 {statistics.median(ordered) * 1000:6.1f} ms, p95 {p95 * 1000:6.1f} ms, max {ordered[-1] * 1000:6.1f} ms"
    )


def timed(client: httpx.Client, path: str, route: str, requests: int, **params: str) -> str:
    """Time ``requests`` GETs of ``path`` (after one warm-up), one at a time: each request's server time is what
    the gateway's metric for ``route`` grew by over it (read after each request: nothing else calls that route),
    its client time what httpx saw on localhost."""
    client.get(path, params=params).raise_for_status()
    before = server_seconds(client, route)[0]
    server, seconds = [], []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path, params=params)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
        after = server_seconds(client, route)[0]
        server.append(after - before)
        before = after
    return f"server {percentiles(server)} | client {percentiles(seconds)}"


def run(stack: Stack, args: argparse.Namespace) -> None:
    api = httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=60)
    payload = {"text": "x" * 1000, "n": 1}
    submitted = []
    for first in range(0, args.tasks, 500):
        batch = [
            {"type": "echo", "group": "team-a", "name": f"report {n}", "payload": payload}
            for n in range(first, min(args.tasks, first + 500))
        ]
        answer = api.post("/v1/tasks:batch", json={"tasks": batch})
        answer.raise_for_status()
        submitted += [item["task"]["id"] for item in answer.json()["items"]]
    start = "2099-01-01T00:00:00Z"  # waiting: the schedules page lists them, no run starts during the bench
    repeating = [
        {
            "type": "echo",
            "group": "team-a",
            "name": f"hourly {n}",
            "payload": payload,
            "schedule": {"every_s": 3600, "start_at": start},
        }
        for n in range(args.schedules)
    ]
    api.post("/v1/tasks:batch", json={"tasks": repeating}).raise_for_status()
    print(f"{len(submitted)} tasks and {args.schedules} repeating tasks submitted")
    with httpx.Client(base_url=stack.url, timeout=60) as browser:
        signed = browser.post("/ui/session", data={"token": "dev-alice"})
        assert signed.status_code == 303, signed.text
        rows = browser.get("/ui/tasks").text.count('<td class="mono"><a href="/ui/tasks/')
        print(f"GET /ui/tasks shows {rows} rows")
        print(f"GET /ui/tasks (50 rows)          {timed(browser, '/ui/tasks', '/ui/tasks', args.requests)}")
        print(
            "GET /ui/tasks?name=report 1     "
            + timed(browser, "/ui/tasks", "/ui/tasks", args.requests, name="report 1")
        )
        print(
            "GET /ui/tasks/{id}              "
            + timed(browser, f"/ui/tasks/{submitted[-1]}", "/ui/tasks/{task_id}", args.requests)
        )
        print(f"GET /ui/schedules (50 rows)      {timed(browser, '/ui/schedules', '/ui/schedules', args.requests)}")
    print(f"GET /v1/tasks?limit=50           {timed(api, '/v1/tasks', '/v1/tasks', args.requests, limit='50')}")
    print("GET /v1/schedules?limit=50       " + timed(api, "/v1/schedules", "/v1/schedules", args.requests, limit="50"))
    api.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--schedules", type=int, default=50)
    args = parser.parse_args()
    with benchmark_stack("console") as stack:
        run(stack, args)


if __name__ == "__main__":
    main()
