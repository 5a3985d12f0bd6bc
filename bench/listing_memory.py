"""Benchmark a gateway worker's peak memory on issue 14's listing scenario.

Starts ministack and a local stack (gunicorn gateway with its default workers and threads, scheduler, reaper, no
executors), writes N tasks whose payloads are 256 KiB of ``[{},{},...]`` straight through the store adapter (the
gateway refuses such payloads now: too many JSON nodes), then lists them page by page through the gateway:
  1. ``GET /v1/tasks?group=team-a&limit=L`` as alice;
  2. with ``--dlq``: as many dead letters split over team-a and team-b, ``GET /v1/dlq?limit=L`` as carol (both groups
     merged).
It prints the pages (items, bytes, seconds) and each gateway worker's peak resident memory (``VmHWM``) after
start-up and after each listing.

Usage: .venv/bin/python bench/listing_memory.py [--tasks 200] [--payload-kib 256] [--limit 200] [--dlq]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from tqcore.settings import CoreSettings
from tqdev.memory import MIB, Listing, gunicorn_workers, hostile_payload, list_every_page, peak_rss_bytes, store_tasks
from tqdev.stack import Stack, benchmark_stack


def peaks(workers: list[int]) -> str:
    return ", ".join(f"{pid}: {peak_rss_bytes(pid) / MIB:.0f} MiB" for pid in workers)


def report(what: str, listing: Listing, made: list[str], workers: list[int], took_s: float) -> None:
    items = [n for n, _, _ in listing.pages]
    sizes = [size / MIB for _, size, _ in listing.pages]
    seconds = [s for _, _, s in listing.pages]
    once = sorted(listing.ids) == sorted(made) and len(set(listing.ids)) == len(listing.ids)
    print(f"{what}: {len(listing.ids)} tasks in {len(items)} pages, each task once: {once}, {took_s:.1f} s")
    print(f"  items per page: {items}")
    p50, slowest = statistics.median(seconds), max(seconds)
    print(f"  page size: max {max(sizes):.2f} MiB; page time p50 {p50:.2f} s, max {slowest:.2f} s")
    print(f"  gateway workers' peak RSS (VmHWM): {peaks(workers)}")


def listed(client: httpx.Client, path: str, params: dict[str, str | int]) -> tuple[Listing, float]:
    started = time.monotonic()
    return list_every_page(client, path, params), time.monotonic() - started


def run(stack: Stack, args: argparse.Namespace) -> None:
    settings = CoreSettings(endpoint_url=stack.config.endpoint_url, prefix=stack.config.prefix)
    payload = hostile_payload(args.payload_kib * 1024)
    workers = gunicorn_workers(stack.procs[0].pid)
    print(f"gateway workers after start-up: {peaks(workers)}")
    started = time.monotonic()
    made = store_tasks(settings, "team-a", args.tasks, payload)
    print(f"stored {len(made)} tasks of {args.payload_kib} KiB payloads in {time.monotonic() - started:.1f} s")
    with httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-alice"}, timeout=300) as alice:
        listing, took_s = listed(alice, "/v1/tasks", {"group": "team-a", "limit": args.limit})
        report("GET /v1/tasks", listing, made, workers, took_s)
    if args.dlq:
        half = args.tasks // 2
        dead = store_tasks(settings, "team-a", half, payload, failed=True)
        dead += store_tasks(settings, "team-b", args.tasks - half, payload, failed=True)
        with httpx.Client(base_url=stack.url, headers={"Authorization": "Bearer dev-carol"}, timeout=300) as carol:
            listing, took_s = listed(carol, "/v1/dlq", {"limit": args.limit})
            report("GET /v1/dlq (team-a and team-b merged)", listing, dead, workers, took_s)
    if gunicorn_workers(stack.procs[0].pid) != workers:
        print("NOTE: a gateway worker was replaced during the run; its peak is lost")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--payload-kib", type=int, default=256)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--dlq", action="store_true", help="also list as many dead letters over two groups")
    args = parser.parse_args()
    with benchmark_stack("memory") as stack:
        run(stack, args)


if __name__ == "__main__":
    main()
