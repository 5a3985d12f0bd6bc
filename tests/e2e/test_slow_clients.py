"""Slow clients hold sockets, not threads: the real gunicorn gateway (one worker, four threads) keeps answering a
normal client within a second while 50 connections trickle a byte every 5 s, and closes each at its deadline; a
client that does not read its responses holds a thread until the body deadline at most."""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_mtls import Pki
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.bootstrap import bootstrap
from tqcore.settings import CoreSettings
from tqdev.procs import Proc, free_port, wait_until
from tqdev.stack import BIN, unique_prefix

pytestmark = pytest.mark.e2e

ATTACKERS = 50
TRICKLE_S = 5.0
#: Deadlines short enough for a quick test; a trickler's second byte (at 5 s) comes before the head deadline.
HEAD_TIMEOUT_S = 6.0
HANDSHAKE_TIMEOUT_S = 4.0
BODY_TIMEOUT_S = 3.0
LATENCY_BOUND_S = 1.0
ALICE = {"Authorization": "Bearer dev-alice"}
REQUEST = b"GET /v1/tasks?group=team-a HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer dev-alice\r\n\r\n"
#: A submit's head (curl's, for a body over 1 KiB): the body follows once the server answers 100 Continue.
UPLOAD = (
    b"POST /v1/tasks HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer dev-alice\r\n"
    b"Content-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


#: One worker of four threads, and no stream or wait slots (each slot adds a thread to the worker's pool).
FOUR_THREADS = {"TQ_GATEWAY_WORKERS": "1", "TQ_GATEWAY_THREADS": "4", "TQ_GATEWAY_STREAMS": "0"}


@contextlib.contextmanager
def gateway(emulator: str, directory: Path, env: dict[str, str], probe: Callable[[str], int]) -> Iterator[str]:
    """A real ``tq-gateway`` with one worker of four threads over fresh resources (task type ``echo``); its URL."""
    prefix, port = unique_prefix(), free_port()
    core = CoreSettings(endpoint_url=emulator, prefix=prefix)
    bootstrap(core)
    DynamoRegistry(aws.client(core, "dynamodb"), core).register_types(["echo"], by="test")  # what a submit names
    scheme = "https" if "TQ_TLS_CERT" in env else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    settings = {"TQ_PREFIX": prefix, "TQ_ENDPOINT_URL": emulator, "TQ_GATEWAY_PORT": str(port)}
    proc = Proc(
        "gateway",
        [str(BIN / "tq-gateway")],
        # No stream slots: their threads would serve ordinary requests too while no stream holds them, and these
        # tests are about the four threads ordinary requests have.
        {**os.environ, **settings, **FOUR_THREADS, "TQ_AUTH": "dev", **env},
        directory / "gateway.log",
    )
    try:
        wait_until(lambda: proc.alive() and probe(url) == 200, 30, f"the gateway on {url} (log: {proc.log_path})")
        yield url
    finally:
        proc.stop()


class Tricklers:
    """``ATTACKERS`` connections sending ``first`` at once, then one byte of ``message`` each every ``TRICKLE_S``,
    for ``duration_s``; when each was closed by the server, and what it answered."""

    def __init__(self, url: str, message: bytes, duration_s: float, first: bytes = b"") -> None:
        port = int(url.rsplit(":", 1)[1])
        self.socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(ATTACKERS)]
        for sock in self.socks:
            sock.sendall(first)
        self.opened = time.monotonic()
        self.closed_after_s: dict[int, float] = {}
        self.replies = {n: b"" for n in range(ATTACKERS)}
        self._message, self._until = message, self.opened + duration_s
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def __enter__(self) -> Tricklers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Wait for the end of the attack, and close what is left."""
        self._thread.join()
        for sock in self.socks:
            sock.close()

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for n, sock in enumerate(self.socks):
                selector.register(sock, selectors.EVENT_READ, n)
            sent, next_byte = 0, self.opened
            while time.monotonic() < self._until and len(self.closed_after_s) < ATTACKERS:
                if time.monotonic() >= next_byte and sent < len(self._message):
                    for n, sock in enumerate(self.socks):
                        if n not in self.closed_after_s:
                            with contextlib.suppress(OSError):
                                sock.send(self._message[sent : sent + 1])
                    sent, next_byte = sent + 1, next_byte + TRICKLE_S
                for key, _ in selector.select(timeout=0.05):
                    self._on_readable(selector, key.data)

    def _on_readable(self, selector: selectors.BaseSelector, n: int) -> None:
        try:
            data = self.socks[n].recv(65536)
        except OSError:  # reset: closed too
            data = b""
        self.replies[n] += data
        if not data:
            self.closed_after_s[n] = time.monotonic() - self.opened
            selector.unregister(self.socks[n])


def latencies_during(until: float, request: Callable[[], httpx.Response]) -> list[float]:
    """A normal client's request every 0.25 s until ``until``: the latency of each (infinite unless a 200)."""
    measured = []
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            ok = request().status_code == 200
        except httpx.TransportError:  # timed out: no answer
            ok = False
        measured.append(time.monotonic() - start if ok else float("inf"))
        time.sleep(0.25)
    return measured


def assert_held(latencies: list[float], attack: Tricklers, deadline_s: float) -> None:
    """Each of a normal client's requests (one every 0.25 s until shortly before the deadline) answered within a
    second, and each trickler closed at ``deadline_s`` after it connected (within the server's 1 s sweep)."""
    closed = sorted(attack.closed_after_s.values()) or [0.0]
    print(f"\nslowest of {len(latencies)} answers {max(latencies):.3f} s; closed {closed[0]:.2f}-{closed[-1]:.2f} s")
    assert max(latencies) < LATENCY_BOUND_S, latencies
    assert len(latencies) >= int((deadline_s - 0.5) / (LATENCY_BOUND_S + 0.25)), latencies  # the whole window
    assert sorted(attack.closed_after_s) == list(range(ATTACKERS)), attack.closed_after_s
    assert all(deadline_s - 0.1 < s < deadline_s + 3 for s in closed), closed


@pytest.fixture(scope="module")
def plain(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {
        "TQ_REQUEST_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT_S),
        "TQ_REQUEST_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "TQ_AUTH_FAILURE_RPS": "0.5",
        "TQ_AUTH_FAILURE_BURST": "5",
    }
    with gateway(emulator, tmp_path_factory.mktemp("plain"), env, lambda url: healthz(url).status_code) as url:
        yield url


def healthz(url: str, **options: Any) -> httpx.Response:
    """``GET /healthz``."""
    return httpx.get(f"{url}/healthz", **options)


def test_trickled_heads_hold_no_thread_and_are_closed_with_a_408_at_their_deadline(plain: str) -> None:
    # Given 50 connections sending a request head one byte every 5 s
    with Tricklers(plain, REQUEST, duration_s=HEAD_TIMEOUT_S + 4) as attack:
        # When a normal client asks for its tasks while they all trickle
        latencies = latencies_during(
            attack.opened + HEAD_TIMEOUT_S - 0.5,
            lambda: httpx.get(f"{plain}/v1/tasks", params={"group": "team-a"}, headers=ALICE, timeout=3),
        )
    # Then every answer came within a second, and every trickler was closed at its deadline, not before
    assert_held(latencies, attack, HEAD_TIMEOUT_S)
    # after a 408 problem+json
    for reply in attack.replies.values():
        assert reply.startswith(b"HTTP/1.1 408 "), reply
        assert b"application/problem+json" in reply, reply
        assert b"urn:tq:problem:request-timeout" in reply, reply


def test_a_kept_alive_connection_serves_requests_and_its_slow_next_head_gets_a_408(plain: str) -> None:
    port = int(plain.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=HEAD_TIMEOUT_S + 5) as sock:
        # Given two whole requests on one connection, each answered on it
        for _ in range(2):
            sock.sendall(REQUEST)
            head = read_response(sock)
            assert head.startswith(b"HTTP/1.1 200 "), head
        # When the third request's head stops half-way
        sock.sendall(REQUEST[:20])
        start = time.monotonic()
        # Then the connection is answered 408 at the head deadline, and closed
        assert read_response(sock).startswith(b"HTTP/1.1 408 ")
        assert sock.recv(1) == b""
        assert HEAD_TIMEOUT_S - 0.1 < time.monotonic() - start < HEAD_TIMEOUT_S + 3


def test_a_body_that_stops_short_gets_a_408_and_a_head_too_large_a_431(plain: str) -> None:
    port = int(plain.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT_S + 5) as sock:
        # Given a submit whose body stops 8 bytes short of its Content-Length
        sock.sendall(b"POST /v1/tasks HTTP/1.1\r\nHost: gateway\r\nContent-Length: 10\r\n\r\n{}")
        start = time.monotonic()
        # Then it is answered 408 at the body deadline
        head = read_response(sock)
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert BODY_TIMEOUT_S - 0.1 < time.monotonic() - start < BODY_TIMEOUT_S + 3
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # Given a head of 70 KiB that goes on (an ALB refuses over 64 KiB too), then 431 at once
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\n"
            + b"X-Padding: "
            + b"a" * 8000
            + b"".join(b"\r\nX-Padding: " + b"a" * 8000 for _ in range(8))
        )
        assert read_response(sock).startswith(b"HTTP/1.1 431 ")


def test_chunked_bodies_hold_no_thread_and_are_refused_with_a_411(plain: str) -> None:
    # Given 50 connections sending a submit's head with a chunked body, then its chunks one byte every 5 s
    head = b"POST /v1/tasks HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n\r\n"
    with Tricklers(plain, b"1\r\na\r\n" * 2, duration_s=6, first=head) as attack:
        # When a normal client asks for its tasks meanwhile
        latencies = latencies_during(
            attack.opened + 3,
            lambda: httpx.get(f"{plain}/v1/tasks", params={"group": "team-a"}, headers=ALICE, timeout=3),
        )
    # Then every answer came within a second, and every chunked upload was refused at once
    assert len(latencies) >= 3, latencies
    assert_held(latencies, attack, 0.0)
    for reply in attack.replies.values():
        assert reply.startswith(b"HTTP/1.1 411 "), reply
        assert b"application/problem+json" in reply, reply
        assert b"Content-Length" in reply.partition(b"\r\n\r\n")[2], reply


def test_expect_100_continue_is_answered_and_a_body_that_never_comes_holds_no_thread(plain: str) -> None:
    # Given 50 connections sending an upload's head with Expect: 100-continue, then no body
    with Tricklers(plain, b"", duration_s=BODY_TIMEOUT_S + 4, first=UPLOAD % 2000) as attack:
        # When a normal client asks for its tasks meanwhile
        latencies = latencies_during(
            attack.opened + BODY_TIMEOUT_S - 0.5,
            lambda: httpx.get(f"{plain}/v1/tasks", params={"group": "team-a"}, headers=ALICE, timeout=3),
        )
    # Then every answer came within a second, and every upload was told to go on, then closed with a 408 at the
    # body deadline
    assert_held(latencies, attack, BODY_TIMEOUT_S)
    for reply in attack.replies.values():
        assert reply.startswith(CONTINUE + b"HTTP/1.1 408 "), reply
    # And a curl-style upload of a body over 1 KiB, sent once told to go on, is accepted
    body = json.dumps({"type": "echo", "group": "team-a", "payload": {"x": "x" * 2000}}).encode()
    with socket.create_connection(("127.0.0.1", int(plain.rsplit(":", 1)[1])), timeout=5) as sock:
        sock.sendall(UPLOAD % len(body))
        assert sock.recv(65536) == CONTINUE  # one 100 Continue, and nothing more before the body
        sock.sendall(body)
        head = read_response(sock)
        assert head.startswith(b"HTTP/1.1 201 "), head


def test_clients_that_never_read_their_responses_hold_threads_until_the_deadline_at_most(plain: str) -> None:
    # Given 8 connections (two per thread) asking for the 34 KB OpenAPI document every 40 ms, reading nothing
    port = int(plain.rsplit(":", 1)[1])
    stallers = [socket.socket() for _ in range(8)]
    for sock in stallers:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
    asking = threading.Thread(target=ask_often, args=(stallers, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"))
    asking.start()
    # When their answers fill the socket buffers, and every thread waits for one of them to read (a normal
    # client's request waits over a second)
    wait_until(lambda: not answered(plain, timeout_s=LATENCY_BOUND_S), 20, "the stallers holding every thread")
    stalled = time.monotonic()
    # Then each staller is dropped once a thread waited the body deadline on it, and the normal client answered
    asking.join()
    wait_until(
        lambda: responses_abandoned(plain) == len(stallers) and answered(plain, timeout_s=LATENCY_BOUND_S),
        4 * BODY_TIMEOUT_S,
        "every staller dropped, and the normal client answered",
    )
    waited = time.monotonic() - stalled
    # and every answer after it comes within a second
    latencies = latencies_during(
        time.monotonic() + 2,
        lambda: httpx.get(f"{plain}/v1/tasks", params={"group": "team-a"}, headers=ALICE, timeout=3),
    )
    print(f"\nall dropped {waited:.2f} s after the stall, then the slowest of {len(latencies)} {max(latencies):.3f} s")
    assert max(latencies) < LATENCY_BOUND_S, latencies
    # and what each staller was sent ends
    for sock in stallers:
        with sock:
            sock.settimeout(5)
            with contextlib.suppress(ConnectionResetError):
                while sock.recv(1 << 20):
                    pass


def answered(url: str, timeout_s: float) -> bool:
    """Whether a normal client's request for its tasks is answered 200 within ``timeout_s``."""
    try:
        response = httpx.get(f"{url}/v1/tasks", params={"group": "team-a"}, headers=ALICE, timeout=timeout_s)
    except httpx.TransportError:
        return False
    return response.status_code == 200


def responses_abandoned(url: str) -> float:
    """How many connections the gateway dropped for not taking their responses (its metric)."""
    metrics = httpx.get(f"{url}/metrics", timeout=3).text
    found = re.search(r'^tq_http_connections_timed_out_total\{stage="response"\} (\S+)$', metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def ask_often(socks: list[socket.socket], request: bytes, times: int = 250) -> None:
    """Send ``request`` on each socket every 40 ms, for 10 s (mostly after the previous answer, not pipelined)."""
    for _ in range(times):
        for sock in socks:
            with contextlib.suppress(OSError):  # dropped by the server
                sock.send(request)
        time.sleep(0.04)


def test_an_address_that_keeps_failing_authentication_gets_a_429_and_known_tokens_still_work(plain: str) -> None:
    # Given an address that failed authentication 5 times (its budget: 5, then one every 2 s)
    with httpx.Client(base_url=plain, timeout=5) as client:
        guesses = [client.get("/v1/tasks", headers={"Authorization": f"Bearer guess-{n}"}) for n in range(5)]
        assert [response.status_code for response in guesses] == [401] * 5
        # When it tries again, Then it is told to wait, in problem+json with Retry-After
        refused = client.get("/v1/tasks", headers={"Authorization": "Bearer guess-5"})
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        # and a token known without a lookup is still served from that address
        assert client.get("/v1/tasks", params={"group": "team-a"}, headers=ALICE).status_code == 200


def read_response(sock: socket.socket) -> bytes:
    """One response with a ``Content-Length`` body from ``sock``: its head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def client_hello() -> bytes:
    """The first flight of a real TLS client."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_handshakes_that_never_finish_hold_no_thread_and_are_closed_at_their_deadline(
    emulator: str, tmp_path: Path
) -> None:
    pki = Pki(tmp_path)
    env = {
        "TQ_TLS_CERT": pki.server[0],
        "TQ_TLS_KEY": pki.server[1],
        "TQ_TLS_CLIENT_CA": pki.ca,
        "TQ_TLS_HANDSHAKE_TIMEOUT_S": str(HANDSHAKE_TIMEOUT_S),
    }
    context = pki.context(pki.client)
    # Given 50 connections sending a TLS client hello one byte every 5 s
    with (
        gateway(emulator, tmp_path, env, lambda url: healthz(url, verify=context).status_code) as url,
        Tricklers(url, client_hello(), duration_s=HANDSHAKE_TIMEOUT_S + 4) as attack,
    ):
        # When a normal client (with its certificate) asks for its tasks on new connections meanwhile
        latencies = latencies_during(
            attack.opened + HANDSHAKE_TIMEOUT_S - 0.5,
            lambda: httpx.get(f"{url}/v1/tasks", params={"group": "team-a"}, headers=ALICE, verify=context, timeout=3),
        )
    # Then every answer came within a second, and every handshake was cut at its deadline, not before
    assert_held(latencies, attack, HANDSHAKE_TIMEOUT_S)
