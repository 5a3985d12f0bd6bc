"""A fault-injecting reverse proxy between services and the AWS emulator, for tests.

    with FaultProxy(upstream=emulator_url) as proxy:
        rule = proxy.inject(Fault.error("ThrottlingException"), service="dynamodb", operation="PutItem", times=1)
        ...  # services started with endpoint_url=proxy.url
        assert rule.hits == 1

Every request is forwarded unchanged (the Host header included, so URLs the emulator hands out, such as SQS
queue URLs, lead back through the proxy) unless a rule picks it: then it gets an AWS error in its protocol's
shape, a delay, or a reset connection (before the emulator sees the request, or after it applied it and before
the caller hears the answer: the ambiguous outcome real networks produce).
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

from tqdev.aws_wire import Call
from tqdev.fault_server import ProxyServer, handler_for


@dataclass(frozen=True)
class Fault:
    """What to do to a picked request: build one with :meth:`error`, :meth:`latency` or :meth:`reset`."""

    kind: str  #: ``error``, ``latency`` or ``reset``
    code: str = ""
    status: int = 0
    message: str = ""
    seconds: float = 0.0
    after_forward: bool = False

    @classmethod
    def error(cls, code: str, status: int = 400, message: str = "injected by tqdev.faults") -> Fault:
        """Answer with an AWS error (``ThrottlingException`` 400, ``InternalError`` 500...) without forwarding."""
        return cls("error", code=code, status=status, message=message)

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before forwarding."""
        return cls("latency", seconds=seconds)

    @classmethod
    def reset(cls, *, after_forward: bool = False) -> Fault:
        """Reset the caller's connection (RST, no answer): before forwarding, or after the emulator applied it."""
        return cls("reset", after_forward=after_forward)

    @property
    def label(self) -> str:
        """A short name for figures: ``error:ThrottlingException``, ``latency``, ``reset``, ``reset-after``."""
        if self.kind == "error":
            return f"error:{self.code}"
        if self.kind == "reset" and self.after_forward:
            return "reset-after"
        return self.kind


@dataclass(eq=False)
class Rule:
    """One injected fault and which requests it picks; ``hits`` counts the requests it affected."""

    fault: Fault
    service: str | None = None
    operation: str | None = None
    #: A text the request's body or path must hold (every one of them, for a tuple).
    match: str | tuple[str, ...] | None = None
    times: int | None = None
    probability: float = 1.0
    hits: int = field(default=0, init=False)

    def wants(self, call: Call, text: str) -> bool:
        """Whether this rule applies to ``call`` (not counting ``times`` or ``probability``)."""
        return (
            (self.service is None or self.service == call.service)
            and (self.operation is None or self.operation == call.operation)
            and (self.match is None or all(m in text for m in _texts(self.match)))
        )


def _texts(match: str | tuple[str, ...]) -> tuple[str, ...]:
    return (match,) if isinstance(match, str) else match


class FaultProxy:
    """A threaded HTTP reverse proxy on 127.0.0.1 (a free port) to ``upstream`` that injects faults by rule."""

    def __init__(self, upstream: str, *, seed: int | None = None) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL, not {upstream!r}")
        self.upstream = (parts.hostname, parts.port or 80)
        self._rules: list[Rule] = []
        self._calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # noqa: S311 - picking faults, not secrets
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._server = ProxyServer(("127.0.0.1", 0), handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint URL to give services: ``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def calls(self) -> dict[tuple[str, str], int]:
        """Requests seen so far by (service, operation), faulted ones included."""
        with self._lock:
            return dict(self._calls)

    def inject(
        self,
        fault: Fault,
        *,
        service: str | None = None,
        operation: str | None = None,
        match: str | tuple[str, ...] | None = None,
        times: int | None = None,
        probability: float = 1.0,
    ) -> Rule:
        """Apply ``fault`` to requests of ``service``/``operation`` whose body or path holds ``match`` (each of
        its texts, for a tuple).

        At most ``times`` requests (``None``: no limit), each picked with ``probability``. Rules are tried in the
        order they were injected; the first that picks a request decides its fault.
        """
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], not {probability}")
        rule = Rule(fault, service, operation, match, times, probability)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        """Stop injecting ``rule`` (its ``hits`` stay readable)."""
        with self._lock:
            if rule in self._rules:
                self._rules.remove(rule)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def pick(self, call: Call, text: str) -> Fault | None:
        """Count ``call`` and choose its fault, if a rule picks it."""
        with self._lock:
            self._calls[(call.service, call.operation)] += 1
            for rule in self._rules:
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                if rule.wants(call, text) and (rule.probability >= 1.0 or self._random.random() < rule.probability):
                    rule.hits += 1
                    return rule.fault
        return None

    def pause(self, seconds: float) -> None:
        """Sleep up to ``seconds``, cut short when the proxy stops."""
        self._stopping.wait(seconds)

    def track(self, sock: socket.socket, *, opened: bool) -> None:
        """Remember (or forget) a live socket, so :meth:`stop` can close it."""
        with self._lock:
            if opened:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def start(self) -> FaultProxy:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection, the ones waiting on the emulator included."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
        with self._lock:
            still_open = list(self._open)
        for sock in still_open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
