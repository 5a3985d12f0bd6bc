"""Benchmark what an open console page costs: the gateway's AWS calls per second while one live stream is open (the
tasks table, a filtered table, a task page), against the same span with none open, quiet and with tasks arriving.

Starts ministack and a local stack (gunicorn gateway, scheduler, reaper, no executors), submits ``--tasks`` tasks
(repeating, their first run an hour ahead: nothing moves them; the table shows 50 rows), signs in at the console as
alice and reads each page's ``data-live`` URL from the page itself. Each scenario holds its stream(s) open for
``--span-s`` seconds and reads the gateway's ``tq_aws_calls_total`` (by operation, every worker) before and after;
the scenario "nothing" is the gateway's own background (its presence heartbeat, the rate-limit replicas),
subtracted in the fourth column. "Arriving" submits one such task a second to alice's group through the API during
the span (its own calls are in that baseline too). Also counts the ``changed`` messages the streams sent. Streams
ping every 2 s here, so one the bench closed ends within 2 s; each scenario waits for the last one's to end first.

Usage: .venv/bin/python bench/console_live.py [--tasks 200] [--span-s 20]
"""

from __future__ import annotations

import argparse
import html
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tqdev.metrics import Samples, scrape, value
from tqdev.stack import Stack, benchmark_stack

ALICE = {"Authorization": "Bearer dev-alice"}
LIVE = re.compile(r'<main id="main" data-live="([^"]+)"')


def calls_by_operation(samples: Samples) -> dict[str, float]:
    """``tq_aws_calls_total`` summed by operation."""
    calls: dict[str, float] = {}
    for (name, labels), count in samples.items():
        if name == "tq_aws_calls_total":
            operation = dict(labels)["operation"]
            calls[operation] = calls.get(operation, 0.0) + count
    return calls


class Stream:
    """One open live stream, read in a thread until closed; counts its ``changed`` messages."""

    def __init__(self, client: httpx.Client, url: str) -> None:
        self.changed = 0
        self.status = 0
        self._response: httpx.Response | None = None
        self._opened = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(client, url), daemon=True)
        self._thread.start()
        assert self._opened.wait(30), "the stream did not open"
        assert self.status == 200, self.status

    def _read(self, client: httpx.Client, url: str) -> None:
        try:
            with client.stream("GET", url, timeout=httpx.Timeout(60, read=None)) as response:
                self._response, self.status = response, response.status_code
                self._opened.set()
                for line in response.iter_lines():
                    if line == "event: changed":
                        self.changed += 1
        except (httpx.HTTPError, RuntimeError, AttributeError):  # closed from the main thread
            pass
        finally:
            self._opened.set()

    def close(self) -> None:
        if self._response is not None:
            self._response.close()
        self._thread.join(5)


@contextmanager
def arriving(api: httpx.Client, on: bool) -> Iterator[None]:
    """Submit one task a second to alice's group while the block runs (if ``on``)."""
    stop = threading.Event()

    def submit() -> None:
        while not stop.wait(1.0):
            api.post("/v1/tasks", json=idle("arrival")).raise_for_status()

    thread = threading.Thread(target=submit, daemon=True)
    if on:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if on:
            thread.join(5)


def streams_open(stack: Stack) -> float:
    """The gateway's open streams (every worker)."""
    return value(scrape(f"{stack.url}/metrics"), "tq_http_waiting_requests", kind="stream")


def measure(
    stack: Stack, browser: httpx.Client, api: httpx.Client, urls: list[str], span_s: float, arrivals: bool
) -> tuple[dict[str, float], float]:
    """AWS calls per second by operation (and ``changed`` messages) with the streams of ``urls`` open for ``span_s``."""
    deadline = time.monotonic() + 30
    while streams_open(stack) and time.monotonic() < deadline:  # the last scenario's streams, closed by their ping
        time.sleep(0.5)
    streams = [Stream(browser, url) for url in urls]
    try:
        with arriving(api, arrivals):
            time.sleep(1.0)  # the streams' first looks and the first arrival are past
            before, at = calls_by_operation(scrape(f"{stack.url}/metrics")), time.monotonic()
            changed_before = sum(s.changed for s in streams)
            time.sleep(span_s)
            after, elapsed = calls_by_operation(scrape(f"{stack.url}/metrics")), time.monotonic() - at
            changed = sum(s.changed for s in streams) - changed_before
    finally:
        for stream in streams:
            stream.close()
    rates = {op: (after[op] - before.get(op, 0.0)) / elapsed for op in after}
    return {op: rate for op, rate in rates.items() if rate > 0}, changed / elapsed


def idle(name: str) -> dict[str, object]:
    """A task nothing acts on during the bench: repeating, its first run an hour ahead (``scheduled``)."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
    return {"type": "echo", "group": "team-a", "name": name, "schedule": {"every_s": 3600, "start_at": start}}


def live_url(browser: httpx.Client, path: str, **params: str) -> str:
    page = browser.get(path, params=params)
    page.raise_for_status()
    found = LIVE.search(page.text)
    assert found, f"{path} has no data-live"
    return html.unescape(found.group(1))


def run(stack: Stack, args: argparse.Namespace) -> None:
    api = httpx.Client(base_url=stack.url, headers=ALICE, timeout=60)
    batch = [idle(f"report {n}") for n in range(args.tasks)]
    for first in range(0, len(batch), 500):
        api.post("/v1/tasks:batch", json={"tasks": batch[first : first + 500]}).raise_for_status()
    task_id = api.get("/v1/tasks", params={"limit": 1}).json()["items"][0]["id"]
    with httpx.Client(base_url=stack.url, timeout=60) as browser:
        assert browser.post("/ui/session", data={"token": "dev-alice"}).status_code == 303
        table = live_url(browser, "/ui/tasks")
        filtered = live_url(browser, "/ui/tasks", status="scheduled", name="report 1")
        task = live_url(browser, f"/ui/tasks/{task_id}")
        print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; ministack; {args.tasks} tasks; "
              f"span {args.span_s:g} s per scenario")  # fmt: skip
        print("| open | tasks arriving | AWS calls/s by operation | calls/s over nothing open | changed/s |")
        print("| --- | --- | --- | --- | --- |")
        for arrivals in (False, True):
            base, _ = measure(stack, browser, api, [], args.span_s, arrivals)
            for label, urls in (
                ("nothing", []),
                ("tasks table (50 rows)", [table]),
                ("filtered table (status, name)", [filtered]),
                ("task page", [task]),
                ("10 task pages, 10 tasks", [live_url(browser, f"/ui/tasks/{i}") for i in ten_ids(api)]),
            ):
                rates, changed = (base, 0.0) if not urls else measure(stack, browser, api, urls, args.span_s, arrivals)
                extra = sum(rates.values()) - sum(base.values())
                by_op = ", ".join(f"{op} {rate:.2f}" for op, rate in sorted(rates.items()))
                print(
                    f"| {label} | {'1/s' if arrivals else 'no'} | {by_op} | {extra:+.2f} | {changed:.2f} |",
                    flush=True,
                )
    api.close()


def ten_ids(api: httpx.Client) -> list[str]:
    return [item["id"] for item in api.get("/v1/tasks", params={"limit": 10}).json()["items"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--span-s", type=float, default=20)
    args = parser.parse_args()
    os.environ["TQ_STREAM_PING_S"] = "2"  # a stream the bench closed is found (and its slot freed) within 2 s
    with benchmark_stack("console-live") as stack:
        run(stack, args)


if __name__ == "__main__":
    main()
