"""The HTTP side of :class:`tqdev.faults.FaultProxy`: one thread per caller connection, forwarding or faulting."""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from tqdev.aws_wire import classify, error_response

if TYPE_CHECKING:
    from tqdev.faults import FaultProxy

#: Headers that belong to one hop: the proxy sets its own.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "expect"}
)
#: Long enough for an SQS long poll (20 s) and a slow emulator under load.
_UPSTREAM_TIMEOUT_S = 60.0


class ProxyServer(ThreadingHTTPServer):
    """A thread per connection, on a backlog deep enough for a whole stack connecting at once."""

    daemon_threads = True  # long polls in flight must not hold up stop()
    request_queue_size = 128  # many service threads connect at once; the default backlog of 5 drops SYNs

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet about callers that went away (a timed-out or killed service); loud about anything else."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


def handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    """The request handler class of one proxy."""

    class Handler(_ProxyHandler):
        owner = proxy

    return Handler


class _ProxyHandler(BaseHTTPRequestHandler):
    """One client connection (kept alive across requests) and its own connection to the emulator."""

    protocol_version = "HTTP/1.1"
    owner: FaultProxy
    _upstream: http.client.HTTPConnection | None = None

    def setup(self) -> None:
        super().setup()
        self.owner.track(self.connection, opened=True)

    def finish(self) -> None:
        self.owner.track(self.connection, opened=False)
        self._close_upstream()
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the emulator and the services log what matters."""

    def do_GET(self) -> None:
        """Forward (or fault) a GET."""
        self._serve()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def _serve(self) -> None:
        body = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        call = classify(self.command, self.path, headers, body)
        fault = self.owner.pick(call, self.path + "\n" + body.decode("utf-8", "replace"))
        if fault is not None and fault.kind == "error":
            extra, payload = error_response(call, fault.code, fault.status, fault.message)
            self._answer(fault.status, extra, payload)
            return
        if fault is not None and fault.kind == "latency":
            self.owner.pause(fault.seconds)
        if fault is not None and fault.kind == "reset" and not fault.after_forward:
            self._reset()
            return
        try:
            status, out_headers, payload = self._forward(body)
        except (OSError, http.client.HTTPException):
            self._reset()  # the emulator went away: the caller sees a dropped connection, as it would
            return
        if fault is not None and fault.kind == "reset":
            self._reset()
            return
        self._answer(status, out_headers, payload)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, up to the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        reused = self._upstream is not None and self._upstream.sock is not None
        try:
            return self._exchange(body)
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            if not reused:
                raise
            # The emulator closed an idle keep-alive connection under us: it never saw this request.
            self._close_upstream()
            return self._exchange(body)

    def _exchange(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        if self._upstream is None:
            self._upstream = http.client.HTTPConnection(*self.owner.upstream, timeout=_UPSTREAM_TIMEOUT_S)
        conn = self._upstream
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for name, value in self.headers.items():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                conn.putheader(name, value)
        if body or self.command not in ("GET", "HEAD", "DELETE"):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        if conn.sock is not None:
            self.owner.track(conn.sock, opened=True)
        response = conn.getresponse()
        payload = response.read()
        headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        if response.will_close:
            self._close_upstream()
        return response.status, headers, payload

    def _close_upstream(self) -> None:
        if self._upstream is not None:
            if self._upstream.sock is not None:
                self.owner.track(self._upstream.sock, opened=False)
            self._upstream.close()
        self._upstream = None

    def _answer(self, status: int, headers: list[tuple[str, str]], payload: bytes) -> None:
        self.send_response_only(status)
        for name, value in headers:
            # HEAD answers keep the emulator's Content-Length: it is the object's size (HeadObject reads it).
            if name.lower() != "content-length" or self.command == "HEAD":
                self.send_header(name, value)
        if self.command != "HEAD" and status not in (204, 304):
            self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(payload)

    def _reset(self) -> None:
        # SO_LINGER on with a zero timeout: close() sends RST at once instead of FIN.
        sock = self.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.owner.track(sock, opened=False)
        self.rfile.close()  # the file's reference would hold the descriptor open past close()
        sock.close()
