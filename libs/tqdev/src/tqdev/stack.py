"""The whole tq stack as local processes: gateway (gunicorn), executors, scheduler and reaper."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tqcore.bootstrap import bootstrap
from tqcore.settings import DEFAULT_POOL, POOL_PATTERN, CoreSettings
from tqdev.emulator import start_emulator
from tqdev.procs import Proc, free_port

BIN = Path(sys.executable).parent

#: Stack environment for tests and benches that drive many requests as one principal: a per-principal rate limit
#: far above what a local stack serves, so the limiter still runs but never throttles (``make run`` keeps the
#: contract's 200 requests/s, burst 400).
HIGH_RATE_LIMIT = {"TQ_RATE_LIMIT_RPS": "100000", "TQ_RATE_LIMIT_BURST": "100000"}


#: The local stack's ``script`` allow-list (contract section 5): useful programs, only arguments that name no file
#: (``date +FORMAT``, ``sleep SECONDS``, ``echo`` of plain words).
DEMO_SCRIPTS = json.dumps(
    {
        "echo": {"rest": r"[A-Za-z0-9][A-Za-z0-9 _.,:;!?+=@#%/-]{0,199}", "max_args": 32},
        "sleep": {"args": [r"[0-9]{1,5}(\.[0-9]{1,3})?"], "min_args": 1},
        "true": {},
        "false": {},
        "date": {"args": [r"\+[A-Za-z0-9%:_ .,/-]{1,100}"]},
    }
)


def unique_prefix() -> str:
    """A resource prefix no other stack or test uses (tests share one emulator)."""
    return f"tqt-{uuid.uuid4().hex[:10]}"


@dataclass
class StackConfig:
    """What to start and where."""

    endpoint_url: str | None
    prefix: str
    run_dir: Path
    port: int = field(default_factory=free_port)
    executors: int = 2
    reapers: int = 1
    schedulers: int = 1
    #: Extra ``TQ_*`` (or other) environment for every service.
    env: dict[str, str] = field(default_factory=dict)
    #: Executors of other pools, one per item: what each adds to its environment (``TQ_POOL``,
    #: ``TQ_HANDLER_MODULES``), as :meth:`Stack.add_executor` takes it.
    pool_executors: list[dict[str, str]] = field(default_factory=list)


class Stack:
    """Starts, watches and stops one stack; every process it starts it also stops.

    It restarts nothing by itself (chaos and crash tests kill executors on purpose and count them): a
    :class:`tqdev.supervisor.Supervisor` over it does, as ``tq-local`` runs one.
    """

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.procs: list[Proc] = []
        self.executors: list[Proc] = []
        self.schedulers: list[Proc] = []
        self._executor_seq = 0
        self._scheduler_seq = 0
        #: Process name -> (service, /metrics port) of every non-gateway process started.
        self._metrics_ports: dict[str, tuple[str, int]] = {}
        config.run_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return f"http://127.0.0.1:{self.config.port}"

    def env(self, service: str) -> dict[str, str]:
        """The environment a service process gets."""
        cfg = self.config
        env = {
            **os.environ,
            "TQ_PREFIX": cfg.prefix,
            "TQ_GATEWAY_PORT": str(cfg.port),
            "TQ_READY_REQUIRES": ",".join(["scheduler", "reaper"] + (["executor"] if cfg.executors else [])),
            # The local stack accepts the contract's dev tokens and API keys (production defaults to keys only).
            "TQ_AUTH": "dev,keys",
            # It runs the demo types (production executors load only what their operator names), plus the
            # shell's own modules, and scripts from the demo allow-list unless the shell names one.
            "TQ_HANDLER_MODULES": ",".join(["tq_executor.demo", *filter(None, [os.environ.get("TQ_HANDLER_MODULES")])]),
            "TQ_SCRIPT_ALLOW": os.environ.get("TQ_SCRIPT_ALLOW")
            or ("" if os.environ.get("TQ_SCRIPTS_FILE") else DEMO_SCRIPTS),
        }
        if service == "gateway":  # its gunicorn workers share one /metrics through files
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self._metrics_dir(service))
        if cfg.endpoint_url:
            env["TQ_ENDPOINT_URL"] = cfg.endpoint_url
            env.setdefault("AWS_ACCESS_KEY_ID", "test")
            env.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        env.update(cfg.env)
        return env

    def _metrics_dir(self, service: str) -> Path:
        path = self.config.run_dir / "metrics" / service
        path.mkdir(parents=True, exist_ok=True)
        return path

    def bootstrap(self, pools: Sequence[str] = ()) -> None:
        """Create the stack's AWS resources (idempotent), the queues of ``pools`` besides the default pool's."""
        settings = CoreSettings(endpoint_url=self.config.endpoint_url, prefix=self.config.prefix)
        saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        if self.config.endpoint_url:
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        try:
            bootstrap(settings, pools)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)

    def start(self, *, ready_timeout_s: float = 60, watch: Callable[[], None] | None = None) -> None:
        """Bootstrap, start every service and wait for ``/readyz`` (see :meth:`wait_ready` for ``watch``)."""
        self.bootstrap()
        self.procs.append(self._spawn("gateway", [str(BIN / "tq-gateway")]))
        for _ in range(self.config.schedulers):
            self.add_scheduler()
        for n in range(self.config.reapers):
            self.procs.append(self._spawn(f"reaper-{n + 1}" if n else "reaper", [str(BIN / "tq-reaper")], "reaper"))
        for _ in range(self.config.executors):
            self.add_executor()
        for env in self.config.pool_executors:
            self.add_executor(env)
        if not self.config.executors:
            self.register_types()
        self.wait_ready(ready_timeout_s, watch)

    def register_types(self) -> None:
        """Register the executors' task types without running an executor (for ``TQ_EXECUTORS=0``)."""
        subprocess.run(
            [str(BIN / "tq-executor"), "register-types"], env=self.env("executor"), check=True, capture_output=True
        )

    def add_executor(self, env: dict[str, str] | None = None) -> Proc:
        """Start one more executor process; ``env`` adds to (or overrides) its environment.

        ``{"TQ_POOL": "b", "TQ_HANDLER_MODULES": "mymodule"}`` starts an executor of pool ``b`` serving only the
        types of ``mymodule``: its queues are created first, and it runs no scripts unless ``env`` names an
        allow-list (the ``script`` type belongs to the default pool's executors).
        """
        extra = dict(env or {})
        pool = extra.get("TQ_POOL", DEFAULT_POOL)
        if pool != DEFAULT_POOL:
            extra.setdefault("TQ_SCRIPT_ALLOW", "")
            self.bootstrap([pool])
        self._executor_seq += 1
        name = f"executor-{self._executor_seq}"
        proc = self._spawn(name, [str(BIN / "tq-executor")], service="executor", env=extra)
        self.executors.append(proc)
        self.procs.append(proc)
        return proc

    def add_scheduler(self) -> Proc:
        """Start one more scheduler replica (the first is named ``scheduler``, later ones ``scheduler-N``)."""
        self._scheduler_seq += 1
        name = "scheduler" if self._scheduler_seq == 1 else f"scheduler-{self._scheduler_seq}"
        proc = self._spawn(name, [str(BIN / "tq-scheduler")], service="scheduler")
        self.schedulers.append(proc)
        self.procs.append(proc)
        return proc

    def stop_schedulers(self) -> None:
        """Stop every scheduler replica (to simulate scheduler downtime); ``add_scheduler`` starts one again."""
        for proc in self.schedulers:
            proc.stop()
        self.schedulers.clear()

    def executor_by_pid(self, pid: int) -> Proc | None:
        """The executor process with this pid, if this stack started it."""
        return next((proc for proc in self.executors if proc.pid == pid), None)

    def wait_ready(self, timeout_s: float, watch: Callable[[], None] | None = None) -> None:
        """Wait until ``/readyz`` answers 200, failing early if a service died.

        ``watch`` (a :class:`tqdev.supervisor.Supervisor`'s ``check``), when given, is called on every poll
        instead: it restarts what died, or raises to give up.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if watch is not None:
                watch()
            elif dead := [p.name for p in self.procs if not p.alive()]:
                raise RuntimeError(
                    f"services exited during start-up: {', '.join(dead)} (logs in {self.config.run_dir})"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"timed out after {timeout_s:.0f} s waiting for {self.url}/readyz (logs in {self.config.run_dir})"
                )
            time.sleep(0.1)

    def respawn(self, proc: Proc) -> Proc:
        """Start a process of this stack that exited again: same name, log file and ``/metrics`` port."""
        proc.stop(timeout_s=0)  # closes its log; kills whatever is left of its process group
        new = proc.respawn()
        for group in (self.procs, self.executors, self.schedulers):
            if proc in group:
                group[group.index(proc)] = new
        return new

    def _spawn(self, name: str, argv: list[str], service: str | None = None, env: dict[str, str] | None = None) -> Proc:
        service = service or name
        env = {**self.env(service), **(env or {})}
        if service != "gateway":  # one /metrics per process, on a port of its own (the gateway serves its own)
            port = free_port()
            env["TQ_METRICS_PORT"] = str(port)
            self._metrics_ports[name] = (service, port)
        return Proc(name, argv, env, self.config.run_dir / f"{name}.log")

    def metrics_targets(self) -> dict[str, list[str]]:
        """Prometheus scrape targets (``host:port``) of the running processes, by job (``tq-<service>``)."""
        targets: dict[str, list[str]] = {}
        for service, url in self.metrics_urls().values():
            targets.setdefault(f"tq-{service}", []).append(url.removeprefix("http://").removesuffix("/metrics"))
        return targets

    def metrics_urls(self) -> dict[str, tuple[str, str]]:
        """Process name -> (service, ``/metrics`` URL) of every running process, the gateway's included."""
        running = {proc.name for proc in self.procs if proc.alive()}
        urls = {"gateway": ("gateway", f"{self.url}/metrics")}
        for name, (service, port) in sorted(self._metrics_ports.items()):
            if name in running:
                urls[name] = (service, f"http://127.0.0.1:{port}/metrics")
        return urls

    def metrics_url(self, name: str) -> str:
        """The ``/metrics`` URL of one process (``executor-1``, ``scheduler``, ``reaper``) or of the gateway."""
        if name == "gateway":
            return f"{self.url}/metrics"
        return f"http://127.0.0.1:{self._metrics_ports[name][1]}/metrics"

    def stop(self) -> None:
        """Stop every process this stack started (executors first, so they release work).

        Executors get their shutdown grace (``TQ_SHUTDOWN_GRACE_S``) plus a margin before SIGKILL, so a
        running attempt may finish instead of being killed mid-way.
        """
        grace_s = float(self.env("executor").get("TQ_SHUTDOWN_GRACE_S", "25"))
        executors = [proc for proc in self.procs if proc in self.executors]
        others = [proc for proc in self.procs if proc not in self.executors]
        # Each group is stopped at once, in parallel: one stop's wait does not add to the next's.
        for group, timeout_s in ((executors, grace_s + 5), (others, 15.0)):
            if group:
                with ThreadPoolExecutor(max_workers=len(group)) as pool:
                    list(pool.map(lambda proc, t=timeout_s: proc.stop(timeout_s=t), group))
        self.procs.clear()
        self.executors.clear()


@contextlib.contextmanager
def benchmark_stack(name: str) -> Iterator[Stack]:
    """ministack and a started local stack with no executors and no rate limit, in a fresh run directory, for a
    benchmark run from the command line; both stopped afterwards, and where their logs are printed."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    run_dir = Path(tempfile.mkdtemp(prefix=f"tq-bench-{name}-"))
    emulator, endpoint = start_emulator("ministack", run_dir)
    stack = Stack(StackConfig(endpoint, unique_prefix(), run_dir, executors=0, env=dict(HIGH_RATE_LIMIT)))
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        emulator.stop()
    print(f"logs: {run_dir}")


def pool_executors(spec: str) -> list[dict[str, str]]:
    """``TQ_POOL_EXECUTORS`` of ``make run``: ``pool=module,module;pool=module`` (one executor per pool) as
    :attr:`StackConfig.pool_executors`; ``ValueError`` naming what is wrong."""
    executors = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        pool, _, modules = part.partition("=")
        names = [m.strip() for m in modules.split(",") if m.strip()]
        if not re.fullmatch(POOL_PATTERN, pool.strip()) or pool.strip() == DEFAULT_POOL or not names:
            raise ValueError(
                f"TQ_POOL_EXECUTORS: {part!r} is not pool=module[,module] (a pool other than {DEFAULT_POOL!r}, "
                "lower-case letters, digits and -)"
            )
        executors.append({"TQ_POOL": pool.strip(), "TQ_HANDLER_MODULES": ",".join(names)})
    return executors
