"""The VisibilityKeeper's choices, on a hand-written SQS stand-in: calls at once, what is given back, what kept."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tq_executor.visibility import VisibilityKeeper

pytestmark = pytest.mark.unit


class SlowSqs:
    """Answers ``ChangeMessageVisibilityBatch`` after ``delay_s``, recording each call's entries."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []
        self._lock = threading.Lock()

    def change_message_visibility_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        time.sleep(self.delay_s)
        with self._lock:
            self.calls.append((QueueUrl, [(e["ReceiptHandle"], e["VisibilityTimeout"]) for e in Entries]))
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def test_batches_are_renewed_at_once_not_one_after_another() -> None:
    sqs = SlowSqs(delay_s=1.0)
    now = [0.0]
    keeper = VisibilityKeeper(sqs, visibility_s=30, renew_every_s=10, monotonic=lambda: now[0])
    for n in range(30):  # three batches of ten, on two queues
        keeper.hold("q1" if n < 20 else "q2", f"r{n}", 30.0, f"m{n}")
        keeper.started(f"r{n}")
    now[0] = 10.0
    began = time.monotonic()
    assert keeper.renew() == 30
    assert time.monotonic() - began < 2.0  # one after another: 3 s
    assert len(sqs.calls) == 3
    keeper.stop()


def test_an_unstarted_message_is_given_back_about_a_lease_after_its_receive_once_per_executor() -> None:
    sqs = SlowSqs(delay_s=0)
    now = [0.0]
    keeper = VisibilityKeeper(sqs, visibility_s=30, renew_every_s=10, monotonic=lambda: now[0])
    keeper.hold("q", "running", 30.0, "m-run")
    keeper.hold("q", "waiting", 30.0, "m-wait")
    keeper.started("running")
    # Renewals keep the running one hidden and leave the waiting one alone
    now[0] = 10.0
    assert keeper.renew() == 1
    assert sqs.calls == [("q", [("running", 30)])]
    # Half a heartbeat before its visibility runs out, the waiting one is given back (and no longer held)
    now[0] = 25.0
    keeper.renew()  # the running one is due again too (in a call of its own: ``0`` and ``30`` do not mix)
    assert sorted(sqs.calls[1:]) == [("q", [("running", 30)]), ("q", [("waiting", 0)])]
    assert keeper.held() == 1
    # Received here again (no one else took it), it is kept hidden like a running one
    keeper.hold("q", "waiting-again", 55.0, "m-wait")
    now[0] = 50.0
    keeper.renew()
    assert sqs.calls[-1] == ("q", [("running", 30), ("waiting-again", 30)])
    keeper.stop()
