"""The deadline worker's one pure decision: what a request head asks of the event loop before a thread gets it."""

from __future__ import annotations

import pytest

from tq_gateway.worker import Head, Logger, read_head

pytestmark = pytest.mark.unit

HEAD = b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\n"


def head(*lines: str) -> bytes:
    """A POST's head with these header lines."""
    return HEAD + "".join(f"{line}\r\n" for line in lines).encode() + b"\r\n"


def wanted(buffered: bytes) -> int | None:
    """The bytes that make the request (its head as handed on, and the body read before), if its head is there."""
    found = read_head(buffered, max_body_bytes=1024)
    return None if found is None else len(found.head) + found.body


@pytest.mark.parametrize(
    ("buffered", "wanted_"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", None),  # the head goes on
        (b"GET / HTTP/1.1\r\n\r\nGET /next", 18),  # the head alone; the rest is the next request's
        (head("Content-Length: 5") + b"ab", len(head("Content-Length: 5")) + 5),  # the head and its body
        (head("content-length : 5"), len(head("content-length : 5")) + 5),  # gunicorn refuses it: waiting is harmless
        (head("Content-Length: 2000"), len(head("Content-Length: 2000"))),  # over the limit: the app refuses it unread
        (head("Content-Length: 5", "Content-Length: 5"), len(head("Content-Length: 5", "Content-Length: 5"))),
        (head("Content-Length: -1"), len(head("Content-Length: -1"))),
        (b"GET / HTTP/1.1\nHost: x\n\n", 24),  # bare LFs end a head too (gunicorn answers 400)
    ],
)
def test_the_bytes_that_make_a_request(buffered: bytes, wanted_: int | None) -> None:
    assert wanted(buffered) == wanted_


def whole(buffered: bytes) -> Head:
    """The head of a request whose head is all there."""
    found = read_head(buffered, max_body_bytes=1024)
    assert found is not None
    return found


def test_a_chunked_body_is_flagged_for_refusal() -> None:
    assert whole(head("Transfer-Encoding: chunked")).chunked
    assert not whole(head("Content-Length: 5")).chunked


def test_expect_100_continue_is_answered_here_and_hidden_from_gunicorn() -> None:
    # Given a curl-style upload: the client waits for a 100 Continue before sending its body
    upload = head("Expect: 100-continue", "Content-Length: 5")
    # Then the loop answers it, and reads the body, from a head without the Expect line
    assert whole(upload) == Head(head("Content-Length: 5"), len(upload), 5, chunked=False, continues=True)
    # but not for an HTTP/1.0 client (which must be ignored), a body over the limit, or no body
    old = b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    for buffered in (old, head("Expect: 100-continue", "Content-Length: 2000"), head("Expect: 100-Continue")):
        assert not whole(buffered).continues, buffered
        assert b"xpect" not in whole(buffered).head, buffered
    # and any other expectation is left to gunicorn (417)
    assert b"Expect: 200-ok" in whole(head("Expect: 200-ok")).head


def test_the_end_of_a_head_is_looked_for_from_where_the_last_search_stopped() -> None:
    head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    assert read_head(head, 1024, start=len(head) - 7) is not None  # the end straddles the old and the new
    assert read_head(head + b"GET / HTTP/1.1\r\n", 1024, start=len(head)) is None  # the next head's


@pytest.mark.parametrize(
    ("argv", "logged"),
    [
        ([], False),  # our config (a logconfig_dict, no access log): no line per request
        (["--access-logfile", "-"], True),  # asked for: one line per request
    ],
)
def test_requests_are_logged_only_when_an_access_log_is_asked_for(argv: list[str], logged: bool) -> None:
    from gunicorn.config import Config

    from tq_gateway import gunicorn_conf

    cfg = Config()
    cfg.set("logconfig_dict", gunicorn_conf.logconfig_dict)
    parsed = cfg.parser().parse_args(argv)
    for name, value in vars(parsed).items():
        if value is not None and name in cfg.settings:
            cfg.set(name, value)
    assert Logger(cfg).access_log_enabled is logged
