"""gunicorn's gthread worker, with each request's head, its body and the TLS handshake read in its event loop
under deadlines: a slow or silent client holds a socket, never one of the worker's few threads for long.

gunicorn's own gthread worker hands a connection to a thread once its first byte is readable, and the thread
then blocks until the whole head (or handshake, or body) arrives: a handful of clients trickling a byte now and
then hold every thread. Here the event loop does the non-blocking reads, closes a connection that misses its
deadline (with a 408 problem+json once HTTP is spoken), and gives a thread only a request it can parse without
waiting: the buffered bytes go to gunicorn's own parser (``unreader.unread``), which stays the one judge of the
request. So the loop answers ``Expect: 100-continue`` itself before it reads the body, and refuses a chunked
body (411: its end is not known in advance). A thread's socket has a timeout too (the body deadline), so a
client that does not read its response holds a thread that long at most, and is then dropped.

Served with ``worker_class = "tq_gateway.worker.DeadlineWorker"``, over HTTP/1.1 (gunicorn's default
``http_protocols``; HTTP/2 would bypass the head reader). The master imports this module: no metrics or AWS
clients at import time.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import ssl
import time
from functools import partial
from typing import Any, NamedTuple

from gunicorn import glogging, http
from gunicorn import sock as gunicorn_sock
from gunicorn.workers.gthread import TConn, ThreadWorker

from tq_gateway import problems, watch
from tq_gateway.settings import GatewaySettings

#: Bytes asked of a socket per read.
RECV_BYTES = 64 * 1024
#: What gunicorn's parser also takes for the end of a head (a bare ``\n\n`` it then refuses, with a 400).
HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
#: The longest head buffered (an AWS ALB allows 64 KiB too); gunicorn's own limits allow ~800 KiB, and every
#: connection of a worker may be buffering one.
MAX_HEAD_BYTES = 64 * 1024
#: The interim response to ``Expect: 100-continue``, sent by the event loop before it reads the body.
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

log = logging.getLogger(__name__)


class Head(NamedTuple):
    """What the event loop needs of a request head."""

    #: The head, without an ``Expect: 100-continue`` line (answered here, never again by gunicorn).
    head: bytes
    #: Its length as received.
    length: int
    #: The ``Content-Length`` body to read here: 0 when none, or one the app refuses unread (over the limit).
    body: int
    #: A ``Transfer-Encoding`` was given: refused with 411 (the API takes small JSON bodies with a length).
    chunked: bool
    #: The client waits for a ``100 Continue`` before sending that body (HTTP/1.1 ``Expect: 100-continue``).
    continues: bool


def read_head(buffered: bytes | bytearray, max_body_bytes: int, start: int = 0) -> Head | None:
    """A connection's next request head, if its end is buffered (looked for from ``start`` on: what was
    searched before need not be again, so a trickled head stays linear).

    The body is read here when there is exactly one ``Content-Length`` of at most ``max_body_bytes``; any other
    length is left to gunicorn and the app (which refuse it without reading a body).
    """
    ends = [(at + len(end)) for end in HEAD_ENDS if (at := buffered.find(end, start)) >= 0]
    if not ends:
        return None
    length = min(ends)
    request_line, *lines = bytes(buffered[:length]).split(b"\n")
    kept, lengths, chunked, expects = [request_line], [], False, False
    for line in lines:
        name, _, value = line.partition(b":")
        if name.lower() == b"expect" and value.strip().lower() == b"100-continue":
            expects = True
            continue
        kept.append(line)
        name, value = name.strip().lower(), value.strip().lower()
        chunked |= name == b"transfer-encoding"
        if name == b"content-length":
            lengths.append(value)
    body = int(lengths[0]) if len(lengths) == 1 and lengths[0].isdigit() else 0
    body = body if body <= max_body_bytes else 0
    # RFC 9110 10.1.1: an HTTP/1.0 client's expectation is ignored.
    continues = expects and body > 0 and request_line.rstrip().endswith(b"HTTP/1.1")
    return Head(b"\n".join(kept), length, body, chunked, continues)


class Logger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger, with an access line per request only when an access log is asked for
    (``--access-logfile``, ``accesslog``).

    gunicorn also turns the access log on whenever a ``logconfig_dict`` is given, which ours is (for JSON
    lines): each request then cost a formatted line (about 4% of the gateway's CPU per submit) that nobody
    asked for; requests are counted and timed by the ``tq_http_*`` metrics instead.
    """

    def _compute_access_log_enabled(self) -> bool:
        return bool(self.cfg.accesslog or (self.cfg.syslog and not self.cfg.disable_redirect_access_to_syslog))


class Conn(TConn):  # type: ignore[misc]
    """A connection, with what the event loop read of its next request and the deadline of what it waits for."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.buffered = bytearray()
        #: Where to look for the end of the head next.
        self.scanned = 0
        self.wanted: int | None = None
        self.deadline = 0.0
        #: What the connection waits for: ``handshake``, ``head`` or ``body`` (a metric label).
        self.stage = "head"
        #: How long a thread's one read or write of this socket may wait (then the connection is dropped).
        self.io_timeout_s: float | None = None
        #: A thread's read or write timed out: the client is not there; close without lingering for it.
        self.stalled = False

    def init(self) -> None:
        """gthread's set-up in the thread, which makes the socket blocking: here with a timeout instead."""
        super().init()
        self.sock.settimeout(self.io_timeout_s)

    def close(self, graceful: bool = False) -> None:
        """Close; gracefully (lingering up to 2 s for the client's end, in the event loop) unless it stalled."""
        super().close(graceful and not self.stalled)


class DeadlineWorker(ThreadWorker):  # type: ignore[misc]
    """A gthread worker whose event loop reads request heads and TLS handshakes under deadlines."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = GatewaySettings()
        self.timeouts_s = {
            "handshake": settings.tls_handshake_timeout_s,
            "head": settings.request_head_timeout_s,
            "body": settings.request_body_timeout_s,
        }
        self.max_body_bytes = max(settings.max_body_bytes, settings.max_batch_body_bytes)  # the largest any path takes
        # A longer head breaks ours, or one of gunicorn's limits (request line, header count or size).
        self.max_head_bytes = min(
            MAX_HEAD_BYTES,
            self.cfg.limit_request_line + 2 + self.cfg.limit_request_fields * (self.cfg.limit_request_field_size + 2),
        )
        self.reading: set[Conn] = set()
        self.ssl_context: ssl.SSLContext | None = None
        self.timed_out: Any = None

    def init_process(self) -> None:
        """In the worker: one TLS context for all its connections, and its metric; then gunicorn's loop."""
        from tq_gateway.metrics import CONNECTIONS_TIMED_OUT

        self.timed_out = CONNECTIONS_TIMED_OUT
        if self.cfg.is_ssl:
            # One context per worker (gunicorn makes one per connection): new certificate files are read by new
            # workers (a rolling restart, or SIGHUP to the master).
            self.ssl_context = gunicorn_sock.ssl_context(self.cfg)
        super().init_process()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM: stop gracefully, and end this worker's streams and waits now (a stream would otherwise hold
        the worker until ``graceful_timeout``; its client reconnects, to another replica, with Last-Event-ID)."""
        super().handle_exit(sig, frame)
        watch.close_all()

    def accept(self, listener: Any) -> None:
        """Accept a connection and start reading its handshake or head in the event loop."""
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        self.nr_conns += 1
        conn = Conn(self.cfg, client, address, listener.getsockname())  # non-blocking from here
        if self.ssl_context is not None:
            try:
                conn.sock = self.ssl_context.wrap_socket(
                    client,
                    server_side=True,
                    do_handshake_on_connect=False,
                    suppress_ragged_eofs=self.cfg.suppress_ragged_eofs,
                )
            except OSError:  # the client is gone already
                self._drop(conn)
                return
            conn.stage = "handshake"
        self._read_next(conn, conn.stage)

    def enqueue_req(self, conn: Conn) -> None:
        """A kept-alive connection spoke again (or read ahead): read its next head here, not in a thread."""
        # A request's body drain can have read into the next request: those bytes start the next head.
        conn.buffered += conn.parser.unreader.take_buffered()
        self._read_next(conn, "head")

    def _read_next(self, conn: Conn, stage: str) -> None:
        conn.stage, conn.wanted, conn.scanned = stage, None, 0
        conn.deadline = time.monotonic() + self.timeouts_s[stage]
        conn.sock.setblocking(False)
        self.reading.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._advance, conn))
        self._advance(conn)  # bytes may be waiting already (read ahead, or behind the handshake)

    def _advance(self, conn: Conn, _fileobj: Any = None) -> None:
        """Move a connection on with what its socket holds: handshake, then head, then body, then a thread."""
        try:
            if conn.stage == "handshake":
                conn.sock.do_handshake()
                conn.stage, conn.deadline = "head", time.monotonic() + self.timeouts_s["head"]
            complete = self._read(conn)
        except ssl.SSLWantReadError:
            return  # the handshake waits for the client
        except ssl.SSLWantWriteError:
            # A handshake's few KiB fit a fresh socket's send buffer: this does not happen in practice, and a
            # client that makes it happen meets its deadline.
            return
        except (OSError, EOFError):  # a failed handshake (its alert is sent), a reset, or the client left
            self._drop(conn)
            return
        except Exception:  # an error here must not end the event loop, and the worker with it
            log.exception("error reading a request from %s", conn.client)
            self._drop(conn)
            return
        if complete:
            self._hand_over(conn)

    def _read(self, conn: Conn) -> bool:
        """Buffer what the socket holds; whether the next request is all there."""
        if conn.wanted is None and conn.buffered:  # read ahead (pipelined): its head may be all there already
            self._read_head(conn)
        while conn.wanted is None or len(conn.buffered) < conn.wanted:
            try:
                chunk = conn.sock.recv(RECV_BYTES)
            except (BlockingIOError, ssl.SSLWantReadError):
                return False
            if not chunk:
                raise EOFError
            conn.buffered += chunk
            if conn.wanted is None:
                self._read_head(conn)
        return True

    def _read_head(self, conn: Conn) -> None:
        """Look for the end of the head in what is buffered; when found, what the request wants next."""
        head = read_head(conn.buffered, self.max_body_bytes, conn.scanned)
        conn.scanned = max(0, len(conn.buffered) - 3)
        if head is None:
            if len(conn.buffered) > self.max_head_bytes:
                self._refuse(conn, 431, f"the request head is over {self.max_head_bytes} bytes")
                raise EOFError
            return
        if head.chunked:  # a chunked body would be read in a thread, with no deadline on the whole
            self._refuse(conn, 411, "send the JSON body with a Content-Length (Transfer-Encoding is not accepted)")
            raise EOFError
        conn.buffered[: head.length] = head.head
        conn.wanted = len(head.head) + head.body
        if len(conn.buffered) < conn.wanted:
            conn.stage, conn.deadline = "body", time.monotonic() + self.timeouts_s["body"]
            if head.continues and conn.sock.send(CONTINUE) < len(CONTINUE):
                raise EOFError  # 25 bytes do not fit its send buffer: the client reads nothing

    def _hand_over(self, conn: Conn) -> None:
        """Give a thread the connection, its buffered request replayed to gunicorn's parser."""
        self._unwatch(conn)
        conn.io_timeout_s = self.timeouts_s["body"]
        conn.sock.settimeout(conn.io_timeout_s)
        if conn.parser is None:
            conn.initialized = True  # the handshake is done; TConn.init would wrap the socket again
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.buffered))
        conn.buffered.clear()
        conn.data_ready = True  # gthread's handle then reads at once, without its own wait
        super().enqueue_req(conn)

    def handle_request(self, req: Any, conn: Conn) -> bool:
        """gthread's, with a response the client does not take within the deadline abandoned quietly."""
        try:
            return bool(super().handle_request(req, conn))
        except TimeoutError:
            self.timed_out.labels("response").inc()
            self.log.info("dropped %s: it did not take its response within %g s", conn.client, conn.io_timeout_s)
            conn.stalled = True
            return False

    def murder_pending(self) -> None:
        """gunicorn's expiry of deferred connections, and ours: close those past their deadline."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [conn for conn in self.reading if conn.deadline <= now]:
            self.timed_out.labels(conn.stage).inc()
            if conn.stage != "handshake":
                what = "request body" if conn.stage == "body" else "request head"
                self._refuse(conn, 408, f"the {what} did not arrive within {self.timeouts_s[conn.stage]:g} s")
            self._drop(conn)

    def _refuse(self, conn: Conn, status: int, detail: str) -> None:
        """Send a problem+json refusal if the socket takes it now (the connection closes after it anyway)."""
        with contextlib.suppress(OSError):
            conn.sock.send(problems.refusal(status, detail))

    def _unwatch(self, conn: Conn) -> None:
        if conn in self.reading:
            self.reading.discard(conn)
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.poller.unregister(conn.sock)

    def _drop(self, conn: Conn) -> None:
        self._unwatch(conn)
        self.nr_conns -= 1
        conn.close()
