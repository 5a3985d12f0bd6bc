"""The executor's VisibilityKeeper on a real FIFO queue: held messages stay hidden past their visibility timeout,
in batched calls; dropped ones come back; one deleted meanwhile is let go."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tq_executor.visibility import VisibilityKeeper
from tqcore.adapters import aws
from tqcore.settings import CoreSettings
from tqdev.stack import unique_prefix

pytestmark = pytest.mark.integration

VISIBILITY_S = 2


@pytest.fixture
def queue(emulator: str) -> Iterator[tuple[Any, str, Counter[str]]]:
    """A fresh FIFO queue (visibility 2 s), a client to it, and that client's calls by operation."""
    sqs = aws.client(CoreSettings(endpoint_url=emulator), "sqs")
    calls: Counter[str] = Counter()
    sqs.meta.events.register("before-call.sqs.*", lambda model, **_: calls.update([model.name]))
    url = sqs.create_queue(
        QueueName=f"{unique_prefix()}-keep.fifo",
        Attributes={"FifoQueue": "true", "VisibilityTimeout": str(VISIBILITY_S)},
    )["QueueUrl"]
    yield sqs, url, calls
    sqs.delete_queue(QueueUrl=url)


def _send(sqs: Any, url: str, count: int) -> None:
    for n in range(count):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{n}", MessageGroupId=f"g{n}", MessageDeduplicationId=f"d{n}")


def _receive_all(sqs: Any, url: str, count: int, wait_s: float) -> list[dict[str, Any]]:
    """Receive until ``count`` messages came (hidden for the queue's visibility timeout) or ``wait_s`` passed."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait_s
    while len(got) < count and time.monotonic() < deadline:
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    return got


def test_held_messages_stay_hidden_in_batched_calls_and_come_back_once_dropped(queue: tuple) -> None:
    sqs, url, calls = queue
    keeper = VisibilityKeeper(sqs, visibility_s=VISIBILITY_S, renew_every_s=0.5)
    # Given 12 received messages whose attempts run, held by the keeper
    _send(sqs, url, 12)
    asked_at = time.monotonic()
    held = _receive_all(sqs, url, 12, wait_s=10)
    assert len(held) == 12
    for message in held:
        keeper.hold(url, message["ReceiptHandle"], asked_at + VISIBILITY_S, message["MessageId"])
        keeper.started(message["ReceiptHandle"])
    calls.clear()
    keeper.start()
    try:
        # When twice their visibility timeout passes
        time.sleep(2 * VISIBILITY_S)
        # Then none came back, and the keeper hid them again ten a call (12 messages: 2 calls a pass)
        assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
        renewals = calls["ChangeMessageVisibilityBatch"]
        assert 2 <= renewals <= 2 * (2 * VISIBILITY_S / (0.5 / 2) + 1)
        assert keeper.held() == 12
        # When they are dropped, they come back after their visibility timeout
        for message in held:
            keeper.drop(message["ReceiptHandle"])
        again = _receive_all(sqs, url, 12, wait_s=VISIBILITY_S + 8)
        assert sorted(m["Body"] for m in again) == sorted(m["Body"] for m in held)
    finally:
        keeper.stop()


def test_a_message_held_less_than_a_heartbeat_costs_no_call_and_a_deleted_one_is_let_go(queue: tuple) -> None:
    sqs, url, calls = queue
    now = [0.0]
    keeper = VisibilityKeeper(sqs, visibility_s=VISIBILITY_S, renew_every_s=1.0, monotonic=lambda: now[0])
    _send(sqs, url, 2)
    kept, deleted = _receive_all(sqs, url, 2, wait_s=10)
    for message in (kept, deleted):
        keeper.hold(url, message["ReceiptHandle"], now[0] + VISIBILITY_S, message["MessageId"])
        keeper.started(message["ReceiptHandle"])
    calls.clear()
    # A message held for less than a heartbeat is not renewed
    now[0] = 0.9
    assert keeper.renew() == 0
    assert calls["ChangeMessageVisibilityBatch"] == 0
    # One acked (deleted) meanwhile is let go once SQS refuses to renew it; the other is renewed
    sqs.delete_message(QueueUrl=url, ReceiptHandle=deleted["ReceiptHandle"])
    now[0] = 1.0
    renewed = keeper.renew()
    assert calls["ChangeMessageVisibilityBatch"] == 1
    assert (renewed, keeper.held()) == (1, 1)


def test_a_message_buffered_unstarted_for_about_a_lease_goes_to_an_idle_executor_once(emulator: str) -> None:
    # Given a queue with a 4 s visibility, where a busy executor received two messages: one runs, one waits
    sqs = aws.client(CoreSettings(endpoint_url=emulator), "sqs")
    url = sqs.create_queue(
        QueueName=f"{unique_prefix()}-lend.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "4"}
    )["QueueUrl"]
    keeper = VisibilityKeeper(sqs, visibility_s=4, renew_every_s=1.0)
    try:
        _send(sqs, url, 2)
        asked_at = time.monotonic()
        running, waiting = sorted(_receive_all(sqs, url, 2, wait_s=10), key=lambda m: m["Body"])
        for message in (running, waiting):
            keeper.hold(url, message["ReceiptHandle"], asked_at + 4, message["MessageId"])
        keeper.started(running["ReceiptHandle"])
        keeper.start()
        # When an idle executor polls for 8 s (twice the visibility)
        taken: list[tuple[str, float]] = []
        while time.monotonic() < asked_at + 8:
            for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            ):
                taken.append((message["Body"], time.monotonic() - asked_at))
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        # Then it got the waiting message once, within about a lease, and never the running one
        assert [body for body, _ in taken] == [waiting["Body"]], taken
        assert taken[0][1] < 4 + 1.0, taken
        assert keeper.held() == 1
        # and the busy executor's late ack of its stale copy changes nothing
        keeper.drop(waiting["ReceiptHandle"])
        with contextlib.suppress(ClientError):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=waiting["ReceiptHandle"])
        keeper.drop(running["ReceiptHandle"])
        sqs.delete_message(QueueUrl=url, ReceiptHandle=running["ReceiptHandle"])
        assert _receive_all(sqs, url, 1, wait_s=2) == []
    finally:
        keeper.stop()
        sqs.delete_queue(QueueUrl=url)
