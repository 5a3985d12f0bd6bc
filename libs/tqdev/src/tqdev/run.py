"""``make run``: the emulator (unless ``AWS_ENDPOINT_URL`` is set), the resources, and the whole stack (and, with
``TQ_MONITORING=1``, Prometheus and Alertmanager scraping it)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

from tqdev.emulator import start_emulator
from tqdev.monitoring import Monitoring, MonitoringConfig
from tqdev.procs import Proc
from tqdev.stack import Stack, StackConfig, pool_executors
from tqdev.supervisor import CrashLoop, Supervisor, describe_exit


class Stopped(Exception):
    """Raised when Ctrl-C or SIGTERM arrives while the stack is still starting."""


def main() -> int:
    """Run the local stack in the foreground until Ctrl-C or SIGTERM, restarting what exits; then stop all of it."""
    try:  # executors of other pools: TQ_POOL_EXECUTORS="gpu=mypkg.gpu_tasks;batch=mypkg.reports"
        others = pool_executors(os.environ.get("TQ_POOL_EXECUTORS", ""))
    except ValueError as error:
        print(f"tq: {error}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    run_dir = Path(os.environ.get("TQ_RUN_DIR") or tempfile.mkdtemp(prefix="tq-run-"))
    emulator: Proc | None = None
    stack: Stack | None = None
    monitoring: Monitoring | None = None
    try:
        endpoint = os.environ.get("AWS_ENDPOINT_URL")
        if not endpoint:
            port = int(os.environ.get("TQ_EMULATOR_PORT", "4566"))
            emulator, endpoint = start_emulator("ministack", run_dir, port=port)
            print(f"tq: ministack on {endpoint}", flush=True)
        stack = Stack(_config(endpoint, run_dir, others))
        supervisor = Supervisor(stack)

        def watch() -> None:
            if stop.is_set():
                raise Stopped
            if emulator is not None:
                _check_emulator(emulator)
            supervisor.check()

        # A generous start-up bound: the supervisor gives up sooner on a service that cannot start.
        stack.start(ready_timeout_s=180, watch=watch)
        if os.environ.get("TQ_MONITORING") == "1":
            monitoring = Monitoring(MonitoringConfig(targets=stack.metrics_targets(), run_dir=run_dir))
            monitoring.start()
            print(
                f"tq: Prometheus on {monitoring.prometheus_url}, Alertmanager on {monitoring.alertmanager_url}",
                flush=True,
            )
        print(f"tq: ready on {stack.url} (logs in {run_dir}); Ctrl-C stops everything", flush=True)
        _print_hints(stack, endpoint)
        while not stop.wait(0.2):
            watch()
        return 0
    except Stopped:
        return 0
    except CrashLoop as error:
        print(f"tq: {error} (logs in {run_dir}); stopping everything", file=sys.stderr, flush=True)
        return 1
    except (TimeoutError, RuntimeError, FileNotFoundError, OSError) as error:
        print(f"tq: {error}", file=sys.stderr, flush=True)
        return 1
    finally:
        if monitoring is not None:
            monitoring.stop()
        if stack is not None:
            stack.stop()
        if emulator is not None:
            emulator.stop()
        print("tq: stopped", flush=True)


def _check_emulator(emulator: Proc) -> None:
    """Raise if the emulator exited: restarting it would not bring back the state it held (every task)."""
    if not emulator.alive():
        raise RuntimeError(
            f"the emulator ({emulator.name}) {describe_exit(emulator.returncode)}; its state (every task) is gone, "
            f"so the stack stops (log in {emulator.log_path})"
        )


def _config(endpoint: str, run_dir: Path, others: list[dict[str, str]]) -> StackConfig:
    """The stack ``make run`` starts, from the shell's ``TQ_*`` knobs."""
    return StackConfig(
        endpoint_url=endpoint,
        prefix=os.environ.get("TQ_PREFIX", "tq"),
        run_dir=run_dir,
        port=int(os.environ.get("TQ_GATEWAY_PORT", "8080")),
        executors=int(os.environ.get("TQ_EXECUTORS", "2")),
        schedulers=int(os.environ.get("TQ_SCHEDULERS", "1")),
        # The local stack accepts dev tokens and API keys unless the shell names other methods.
        env={"TQ_AUTH": os.environ["TQ_AUTH"]} if os.environ.get("TQ_AUTH") else {},
        pool_executors=others,
    )


def _print_hints(stack: Stack, endpoint: str) -> None:
    """How to try the stack: a bearer token (or how to make an API key) and a first submit."""
    bearer = "dev-alice"
    if "dev" not in stack.env("gateway")["TQ_AUTH"].split(","):
        bearer = "<key>"
        print(
            f"tq: dev tokens are off; make a <key> with: AWS_ENDPOINT_URL={endpoint} AWS_ACCESS_KEY_ID=test "
            f"AWS_SECRET_ACCESS_KEY=test TQ_PREFIX={stack.config.prefix} .venv/bin/tq-keys create --user alice "
            "--group team-a",
            flush=True,
        )
    print(
        f"try: curl -H 'Authorization: Bearer {bearer}' -H 'content-type: application/json' "
        f'-d \'{{"type":"echo","group":"team-a","payload":{{"x":1}}}}\' {stack.url}/v1/tasks',
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
