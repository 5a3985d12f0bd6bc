"""The client's decisions without I/O: SSE decoding, when a stream resumes or ends, how ``wait`` paces its reads,
and when a request is sent again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

import tq
from tq.follow import MAX_BREAKS, Streaming, Waiting
from tq.models import Event, ProgressEvent, Task
from tq.retries import Retries, Retrying, retry_after_s
from tq.sse import Message, SseDecoder

pytestmark = pytest.mark.unit

AT = "2026-01-05T08:00:00.000Z"


def task(status: str, version: int) -> Task:
    return Task.model_validate(
        {
            "id": "t-1", "type": "echo", "group": "team-a", "owner": "alice", "name": None, "description": None,
            "payload": {}, "priority": "normal", "pool": "default", "status": status, "version": version,
            "attempts": 1, "retries": 0, "retry": {"max_retries": 5, "backoff_base_s": 2.0, "backoff_max_s": 300.0},
            "timeout_s": 300, "schedule": None, "overlap": "skip", "expires_at": None, "idempotency_key": None,
            "worker": None, "created_at": AT, "updated_at": AT, "queued_at": None, "started_at": None,
            "finished_at": None, "next_run_at": None, "lease_expires_at": None, "run_count": 0,
            "cancel_requested": False, "paused_at": None, "parent_id": None, "last_error": None, "result": None,
            "progress": None,
        }
    )  # fmt: skip


def event_lines(seq: int, kind: str) -> list[str]:
    data = f'{{"seq": {seq}, "type": "{kind}", "at": "{AT}", "actor": "alice", "data": {{}}}}'
    return [f"id: {seq}", f"event: {kind}", f"data: {data}", ""]


# -------------------------------------------------------------------------------------------------------- SSE
def test_sse_messages_end_at_a_blank_line_and_skip_comments() -> None:
    decoder = SseDecoder()
    lines = [": ping", "retry: 2000", "id: 3", "event: claimed", "data: {", "data: }", "", "", "data:x", ""]
    messages = [m for m in map(decoder.feed, lines) if m is not None]
    assert messages == [Message("claimed", "{\n}", "3"), Message("message", "x", None)]
    assert decoder.retry_ms == 2000


# ----------------------------------------------------------------------------------------------- Streaming
def test_a_stream_yields_events_and_progress_and_resumes_after_the_last_event() -> None:
    streaming = Streaming("t-1")
    assert "Last-Event-ID" not in streaming.call().headers
    progress = ["event: progress", f'data: {{"fraction": 0.5, "message": "half", "at": "{AT}"}}', ""]
    items = [streaming.feed(line) for line in [*event_lines(4, "claimed"), *progress]]
    got = [item for item in items if item is not None]
    assert [type(item) for item in got] == [Event, ProgressEvent]
    assert [item.type for item in got] == ["claimed", "progress"]
    call = streaming.call()
    assert (call.path, call.headers["Last-Event-ID"]) == ("/v1/tasks/t-1/stream", "4")
    assert call.read_timeout_s is not None
    assert call.read_timeout_s > 15  # longer than the server's keep-alive interval


def test_a_stream_message_that_is_not_an_event_is_an_api_error() -> None:
    streaming = Streaming("t-1")
    streaming.feed("event: claimed")
    streaming.feed("data: {}")
    with pytest.raises(tq.ApiError) as odd:
        streaming.feed("")
    assert odd.value.problem["title"] == "Unexpected answer"
    assert "the answer of GET /v1/tasks/t-1/stream does not read as Event (seq: Field required)" in str(odd.value)


def test_a_stream_ends_when_the_task_has_ended_with_its_last_event_seen() -> None:
    streaming = Streaming("t-1")
    for line in ["retry: 1000", *event_lines(5, "succeeded")]:
        streaming.feed(line)
    assert streaming.after_end(task("running", 5)) == 1.0  # closed early (its lifetime): resume after the hint
    assert streaming.after_end(task("succeeded", 5)) is None


def test_a_task_that_ended_after_the_last_event_seen_is_resumed_once_more() -> None:
    streaming = Streaming("t-1")
    for line in event_lines(3, "claimed"):
        streaming.feed(line)
    assert streaming.after_end(task("succeeded", 4)) == 0.0  # the rest is replayed after event 3, at once
    assert streaming.after_end(task("succeeded", 4)) is None  # and then it ends, whatever came


def test_a_stream_that_keeps_breaking_gives_up() -> None:
    streaming = Streaming("t-1")
    pauses = [streaming.broke(httpx.ReadError("reset")) for _ in range(MAX_BREAKS)]
    assert pauses == [0.5, 1.0, 2.0, 4.0, 8.0]
    with pytest.raises(tq.NetworkError):
        streaming.broke(httpx.ReadError("reset"))


def test_an_event_between_breaks_resets_the_count_and_the_server_hint_sets_the_pause() -> None:
    streaming = Streaming("t-1")
    for _ in range(MAX_BREAKS):
        streaming.broke(httpx.ReadError("reset"))
    for line in ["retry: 250", *event_lines(2, "queued")]:
        streaming.feed(line)
    assert streaming.broke(httpx.ReadError("reset")) == 0.25


# ------------------------------------------------------------------------------------------------- Waiting
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_wait_asks_30_s_at_a_time_then_what_is_left() -> None:
    clock = Clock()
    waiting = Waiting("t-1", 45, now=clock)
    assert waiting.first().params == {"wait_s": 30}
    clock.now += 30
    pause, call = waiting.next(task("running", 3)) or (None, None)
    assert (pause, call and call.params) == (0.0, {"wait_s": 15})
    clock.now += 15
    assert waiting.next(task("running", 3)) is None  # time is up: the task as it is


def test_without_a_timeout_wait_waits_until_the_task_ends() -> None:
    clock = Clock()
    waiting = Waiting("t-1", None, now=clock)
    waiting.first()
    for _ in range(100):
        clock.now += 30
        step = waiting.next(task("running", 3))
        assert step is not None
        assert step[1].params == {"wait_s": 30}
    assert waiting.next(task("failed", 9)) is None


def test_a_server_that_answers_at_once_is_polled_once_a_second() -> None:
    clock = Clock()
    waiting = Waiting("t-1", 10, now=clock)
    waiting.first()
    clock.now += 0.01  # it did not wait
    step = waiting.next(task("queued", 2))
    assert step is not None
    assert step[0] == 1.0


# ------------------------------------------------------------------------------------------------- retries
def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


def test_429_is_retried_even_when_the_request_is_not_repeatable() -> None:
    retrying = Retrying(Retries(), repeatable=False)
    assert retrying.after_response(answer(429, **{"Retry-After": "3"})) == 3.0
    assert retrying.after_response(answer(503, **{"Retry-After": "3"})) is None


@pytest.mark.parametrize("status", [502, 503, 504])
def test_unavailable_is_retried_when_repeatable_with_backoff(status: int) -> None:
    retrying = Retrying(Retries(attempts=3), repeatable=True)
    assert [retrying.after_response(answer(status)) for _ in range(3)] == [0.5, 1.0, None]


def test_success_and_client_errors_are_taken_as_they_are() -> None:
    retrying = Retrying(Retries(), repeatable=True)
    assert retrying.after_response(answer(200)) is None
    assert retrying.after_response(answer(409)) is None


def test_a_pause_past_the_total_budget_is_not_taken() -> None:
    clock = Clock()
    retrying = Retrying(Retries(max_wait_s=10), repeatable=True, now=clock)
    assert retrying.after_response(answer(503, **{"Retry-After": "4"})) == 4.0
    clock.now += 4
    assert retrying.after_response(answer(503, **{"Retry-After": "7"})) is None


def test_a_broken_connection_is_retried_only_when_safe() -> None:
    assert Retrying(Retries(), repeatable=False).after_error(httpx.ConnectError("refused")) == 0.5
    assert Retrying(Retries(), repeatable=True).after_error(httpx.ReadError("reset")) == 0.5
    with pytest.raises(tq.NetworkError) as lost:
        Retrying(Retries(), repeatable=False).after_error(httpx.ReadError("reset"))
    assert lost.value.problem["detail"] == "ReadError: reset"


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("7", 7.0), ("soon", None), (format_datetime(datetime.now(UTC) - timedelta(hours=1)), 0.0)],
)
def test_retry_after_reads_seconds_or_a_date(header: Any, seconds: float | None) -> None:
    assert retry_after_s(header) == seconds


def test_retry_after_as_an_http_date_in_the_future() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after_s(later) or 0) <= 30
