"""The deadline worker's one pure decision: how many bytes make the next request it hands to a thread."""

from __future__ import annotations

import pytest

from tq_gateway.worker import wanted_bytes

pytestmark = pytest.mark.unit

HEAD = b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\n"


def head(*lines: str) -> bytes:
    """A POST's head with these header lines."""
    return HEAD + "".join(f"{line}\r\n" for line in lines).encode() + b"\r\n"


@pytest.mark.parametrize(
    ("buffered", "wanted"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", None),  # the head goes on
        (b"GET / HTTP/1.1\r\n\r\nGET /next", 18),  # the head alone; the rest is the next request's
        (head("Content-Length: 5") + b"ab", len(head("Content-Length: 5")) + 5),  # the head and its body
        (head("content-length : 5"), len(head("content-length : 5")) + 5),  # gunicorn refuses it: waiting is harmless
        (head("Content-Length: 2000"), len(head("Content-Length: 2000"))),  # over the limit: the app refuses it unread
        (head("Content-Length: 5", "Content-Length: 5"), len(head("Content-Length: 5", "Content-Length: 5"))),
        (head("Content-Length: -1"), len(head("Content-Length: -1"))),
        (head("Transfer-Encoding: chunked"), len(head("Transfer-Encoding: chunked"))),
        (head("Expect: 100-continue", "Content-Length: 5"), len(head("Expect: 100-continue", "Content-Length: 5"))),
        (b"GET / HTTP/1.1\nHost: x\n\n", 24),  # bare LFs end a head too (gunicorn answers 400)
    ],
)
def test_wanted_bytes(buffered: bytes, wanted: int | None) -> None:
    assert wanted_bytes(buffered, max_body_bytes=1024) == wanted


def test_the_end_of_a_head_is_looked_for_from_where_the_last_search_stopped() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert wanted_bytes(head, 1024, start=len(head) - 7) == len(head)  # the end straddles the old and the new
    assert wanted_bytes(head + b"GET / HTTP/1.1\r\n", 1024, start=len(head)) is None  # the next head's
