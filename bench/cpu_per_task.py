"""CPU milliseconds per task of each tq process (and the emulator) for a burst of no-op tasks.

Starts ministack and a stack like the peer run's (gateway, scheduler, reaper, ONE executor of ``--threads``
threads), warms it up, then submits ``--n`` echo tasks from ``--clients`` threads over HTTP, waits until every one
has run, and prints each process's CPU time (user + system, summed over its whole session: gunicorn workers,
handler processes) divided by the tasks, plus the wall time. With ``--py-spy DIR`` every service (and its
subprocesses) is sampled by py-spy during the burst; ``DIR/<name>.txt`` then lists the top functions by
inclusive and by own samples, per task.

Usage: .venv/bin/python bench/cpu_per_task.py [--n 2000] [--clients 8] [--threads 8] [--prefetch 8] [--py-spy DIR]
(py-spy: ``.venv/bin/pip install py-spy``; it samples with ``--nonblocking``.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tqdev.emulator import start_emulator
from tqdev.metrics import scrape
from tqdev.stack import HIGH_RATE_LIMIT, Stack, StackConfig, unique_prefix

HEADERS = {"Authorization": "Bearer dev-alice"}
TICKS = os.sysconf("SC_CLK_TCK")


def session_cpu_s() -> Counter[int]:
    """CPU seconds (user + system) of every live process, summed by session id."""
    totals: Counter[int] = Counter()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        totals[int(fields[3])] += (int(fields[11]) + int(fields[12])) / TICKS
    return totals


def aws_calls(stack: Stack) -> Counter[str]:
    """``tq_aws_calls_total`` of every running process, by process and operation."""
    total: Counter[str] = Counter()
    for name, (_, url) in stack.metrics_urls().items():
        for (metric, labels), count in scrape(url).items():
            if metric == "tq_aws_calls_total":
                total[f"{name}:{dict(labels)['operation']}"] += int(count)
    return total


def executed(run_dir: Path) -> int:
    path = run_dir / "executions.log"
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_executed(run_dir: Path, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while executed(run_dir) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {executed(run_dir)} of {count} tasks executed")
        time.sleep(0.05)


def submit_all(url: str, first: int, count: int, clients: int) -> None:
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:

        def one(n: int) -> None:
            client.post("/v1/tasks", json={"type": "echo", "group": "team-a", "payload": {"n": n}}).raise_for_status()

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, range(first, first + count)))


def spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` and its subprocesses into ``out`` (collapsed stacks)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    argv = [py_spy, "record", "--nonblocking", "--subprocesses", "--gil", "-r", "200", "-f", "raw", "-o", str(out)]
    return subprocess.Popen([*argv, "--pid", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize(raw: Path, tasks: int, top: int = 40) -> str:
    """Top functions by inclusive and own samples (only samples holding the GIL: Python CPU), per task."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        count = int(count_text)
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples (200 Hz: 5 ms each) for {tasks} tasks = {total * 5 / tasks:.2f} ms/task sampled"]
    for title, counts in (("inclusive", inclusive), ("own", own)):
        lines.append(f"-- top by {title} samples (ms/task)")
        lines += [f"{c * 5 / tasks:8.3f}  {frame}" for frame, c in counts.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--prefetch", type=int, default=8)
    parser.add_argument("--py-spy", type=Path, default=None, help="sample every service into this directory")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    run_dir = Path(tempfile.mkdtemp(prefix="tq-cpu-"))
    with contextlib.ExitStack() as resources:
        env = {
            "TQ_DEMO_EXECUTION_LOG": str(run_dir / "executions.log"),
            "TQ_THREADS": str(args.threads),
            "TQ_PREFETCH": str(args.prefetch),
            **HIGH_RATE_LIMIT,
        }
        emulator, endpoint = start_emulator("ministack", run_dir)
        resources.callback(emulator.stop)
        stack = Stack(StackConfig(endpoint_url=endpoint, prefix=unique_prefix(), run_dir=run_dir, executors=1, env=env))
        resources.callback(stack.stop)
        stack.start()
        warm = 50
        submit_all(stack.url, 0, warm, args.clients)
        wait_executed(run_dir, warm, 60)
        time.sleep(1)
        procs = {proc.name: proc.pid for proc in stack.procs} | {"emulator": emulator.pid}
        spies = {}
        if args.py_spy is not None:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            spies = {name: spy(pid, args.py_spy / f"{name}.raw") for name, pid in procs.items() if name != "emulator"}
            time.sleep(1)
        calls_before = aws_calls(stack)
        before, t0 = session_cpu_s(), time.monotonic()
        submit_all(stack.url, warm, args.n, args.clients)
        submitted = time.monotonic()
        wait_executed(run_dir, warm + args.n, 600)
        after, t1 = session_cpu_s(), time.monotonic()
        calls = aws_calls(stack) - calls_before
        for proc in spies.values():
            proc.send_signal(2)
        for proc in spies.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
        print(
            f"{args.n} echo tasks, {args.clients} client threads, 1 executor x {args.threads} threads; "
            f"submitted in {submitted - t0:.1f} s, all ran after {t1 - t0:.1f} s ({args.n / (t1 - t0):.1f} tasks/s)"
        )
        total = 0.0
        for name, pid in procs.items():
            ms = 1000 * (after[pid] - before[pid]) / args.n
            total += ms if name != "emulator" else 0
            print(f"  {name:12s} {ms:6.2f} ms CPU/task")
        print(f"  {'tq services':12s} {total:6.2f} ms CPU/task (all but the emulator)")
        print(f"AWS calls per task: {sum(calls.values()) / args.n:.2f}")
        for name, count in sorted(calls.items()):
            if count / args.n >= 0.005:
                print(f"  {name:40s} {count / args.n:5.2f}")
        for name in spies:
            raw = args.py_spy / f"{name}.raw"
            if raw.exists():
                (args.py_spy / f"{name}.txt").write_text(summarize(raw, args.n) + "\n")
        if spies:
            print(f"  py-spy summaries in {args.py_spy}/<process>.txt")


if __name__ == "__main__":
    main()
