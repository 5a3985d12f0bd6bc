"""Benchmark the console's pages (issue 18): ``GET /ui/tasks`` with 50 rows (target: under 300 ms server time),
filtered, and a task page, against ``GET /v1/tasks?limit=50`` for reference.

Starts ministack and a local stack (gunicorn gateway, scheduler, reaper, no executors), submits ``--tasks`` tasks
(named, with a ~1 KiB payload) in batches, signs in at the console as alice, then times each page over HTTP on
localhost (client-side: an upper bound of the server's time) and reads the gateway's own request-duration
metric (``tq_http_request_duration_seconds``, by route) before and after each series: its mean is the server time.

Usage: .venv/bin/python bench/console_pages.py [--tasks 200] [--requests 30]
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


def timed(client: httpx.Client, path: str, route: str, requests: int, **params: str) -> str:
    """Time ``requests`` GETs of ``path`` (after one warm-up): client percentiles and the server's mean."""
    client.get(path, params=params).raise_for_status()
    before = server_seconds(client, route)
    seconds = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(path, params=params)
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    after = server_seconds(client, route)
    server_ms = (after[0] - before[0]) / max(1.0, after[1] - before[1]) * 1000
    ordered = sorted(seconds)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return (
        f"server mean {server_ms:6.1f} ms | client p50 {statistics.median(seconds) * 1000:6.1f} ms, "
        f"p90 {p90 * 1000:6.1f} ms, max {max(seconds) * 1000:6.1f} ms"
    )


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
    print(f"{len(submitted)} tasks submitted")
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
    print(f"GET /v1/tasks?limit=50           {timed(api, '/v1/tasks', '/v1/tasks', args.requests, limit='50')}")
    api.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with benchmark_stack("console") as stack:
        run(stack, args)


if __name__ == "__main__":
    main()
