"""Keeps every SQS message an executor holds hidden until it is acked: running ones and those buffered unstarted.

A message is received with visibility = the lease. Dramatiq buffers up to ``TQ_PREFETCH`` messages per queue,
running ones included, so under a backlog of long tasks a buffered message can wait unstarted longer than its
visibility: it would then be received again (here or elsewhere), and after ``maxReceiveCount`` receives SQS would
move a healthy task to the dead-letter queue. So each message held, from receive to ack, nack or give-back, is
hidden again for the lease about every ``TQ_HEARTBEAT_S``, up to ten at a time (``ChangeMessageVisibilityBatch``):
a message held for less than a heartbeat costs nothing; when one of a queue's messages is due, the others held
for at least half a heartbeat ride along in the same call, so messages received at different times fall into step.

This runs on its own thread with its own SQS client, whose calls give up well inside the visibility timeout: a
slow call delays no lease (heartbeats are DynamoDB's) and no ack. A renewal that races a give-back may hide that
message for one more visibility timeout; it is received again then (the claim decides who runs it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

#: ``ChangeMessageVisibilityBatch`` takes at most this many entries.
BATCH = 10
#: Per-entry errors that only mean the message is no longer ours (deleted, or received again elsewhere).
GONE_CODES = frozenset({"ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"})
#: Calls made at once (one per batch of ten, per queue).
PARALLEL_CALLS = 4
#: How many given-back message ids are remembered (to give each back once); the oldest are forgotten first.
GIVEN_BACK_REMEMBERED = 10_000


def is_gone(error: ClientError | dict[str, Any]) -> bool:
    """Whether an SQS error (raised, or a batch entry's failure) only means the receipt is no longer ours."""
    code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else error.get("Code")
    return code in GONE_CODES


@dataclass(frozen=True)
class ReceivedMessage:
    """An SQS message as ``ReceiveMessage`` returned it: what the consumer needs, without boto3 resources.

    (boto3's resource layer builds a ``Message`` resource per message, which took about half of an
    executor's CPU at a peak of hundreds of tasks.)
    """

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]
    queue_url: str
    client: Any = field(repr=False, compare=False)
    #: The sender's ``MessageAttributes`` as SQS returns them (the W3C trace context).
    message_attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: dict[str, Any], queue_url: str, client: Any) -> ReceivedMessage:
        """From one entry of ``ReceiveMessage``'s ``Messages``."""
        return cls(
            raw["MessageId"],
            raw["ReceiptHandle"],
            raw["Body"],
            raw.get("Attributes", {}),
            queue_url,
            client,
            raw.get("MessageAttributes", {}),
        )

    def change_visibility(self, *, VisibilityTimeout: int) -> None:  # boto3 Message.change_visibility
        """Hide the message for ``VisibilityTimeout`` more seconds (0: visible at once)."""
        self.client.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=self.receipt_handle, VisibilityTimeout=VisibilityTimeout
        )

    def delete(self) -> None:
        """Delete the message."""
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=self.receipt_handle)


@dataclass(eq=False)
class _Held:
    queue_url: str
    receipt_handle: str
    #: Monotonic time before which the message is surely hidden (measured before the call that hid it).
    hidden_until: float
    message_id: str
    #: Renewed until dropped (its attempt started, or it was given back once already): never given back.
    kept: bool = False


class VisibilityKeeper:
    """Renews the visibility of running attempts' messages, batched per queue; gives back long-buffered ones."""

    def __init__(
        self,
        client: Any,
        *,
        visibility_s: int,
        renew_every_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._visibility_s = visibility_s
        #: A kept message is due once its visibility was set this long ago; others ride along after half of it.
        self._due_left_s = visibility_s - renew_every_s
        self._ride_left_s = visibility_s - renew_every_s / 2
        #: An unstarted message is given back once its visibility has this little left (at least two ticks).
        self._give_back_left_s = renew_every_s / 2
        self._tick_s = min(1.0, renew_every_s / 4)
        self._monotonic = monotonic
        self._held: dict[str, _Held] = {}
        self._given_back: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="visibility-keeper", daemon=True)
        self._pool = ThreadPoolExecutor(max_workers=PARALLEL_CALLS, thread_name_prefix="visibility-call")

    def start(self) -> None:
        """Start renewing in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop renewing (held messages then come back when their visibility runs out)."""
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def hold(self, queue_url: str, receipt_handle: str, hidden_until: float, message_id: str = "") -> None:
        """Keep a just-received message hidden (``hidden_until``: monotonic, taken before the receive)."""
        with self._lock:
            kept = message_id in self._given_back
            self._held[receipt_handle] = _Held(queue_url, receipt_handle, hidden_until, message_id, kept)

    def started(self, receipt_handle: str) -> None:
        """The message's attempt starts: keep it hidden until it is dropped (a message given back: nothing)."""
        with self._lock:
            if held := self._held.get(receipt_handle):
                held.kept = True

    def drop(self, receipt_handle: str) -> None:
        """Stop keeping a message hidden (acked, nacked or given back)."""
        with self._lock:
            self._held.pop(receipt_handle, None)

    def held(self) -> int:
        """How many messages are held."""
        with self._lock:
            return len(self._held)

    def renew(self) -> int:
        """One pass: give back unstarted messages about to show; hide again the kept ones due (with riders).

        How many were renewed.
        """
        now = self._monotonic()
        kept: dict[str, list[_Held]] = {}
        giving: dict[str, list[_Held]] = {}
        with self._lock:
            for held in list(self._held.values()):
                if held.kept:
                    kept.setdefault(held.queue_url, []).append(held)
                elif held.hidden_until - now <= self._give_back_left_s:
                    giving.setdefault(held.queue_url, []).append(self._held.pop(held.receipt_handle))
                    self._remember_given_back(held.message_id)
        calls = [(url, batch, 0) for url, messages in giving.items() for batch in _batches(messages)]
        for queue_url, messages in kept.items():
            if any(m.hidden_until - now <= self._due_left_s for m in messages):
                riding = [m for m in messages if m.hidden_until - now <= self._ride_left_s]
                calls += [(queue_url, batch, self._visibility_s) for batch in _batches(riding)]
        if not calls:
            return 0
        return sum(self._pool.map(lambda call: self._change_batch(*call), calls))

    def _remember_given_back(self, message_id: str) -> None:
        if message_id:
            self._given_back[message_id] = None
            while len(self._given_back) > GIVEN_BACK_REMEMBERED:
                self._given_back.popitem(last=False)

    def _change_batch(self, queue_url: str, batch: list[_Held], seconds: int) -> int:
        """Set the visibility of up to ten messages; how many were renewed (a give-back, ``seconds`` 0: none)."""
        asked_at = self._monotonic()
        what = "keep hidden" if seconds else "give back"
        try:
            response = self._client.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds}
                    for n, m in enumerate(batch)
                ],
            )
        except (ClientError, BotoCoreError) as error:  # tried again next pass, while the visibility lasts
            log.warning("could not %s %d messages: %s", what, len(batch), error)
            return 0
        if not seconds:  # given back: they show once their visibility runs out even if this failed
            log.info("gave back %d messages buffered unstarted for about a lease", len(batch))
            return 0
        ok = {int(entry["Id"]) for entry in response.get("Successful", [])}
        for n in ok:
            batch[n].hidden_until = asked_at + seconds
        for failure in response.get("Failed", []):
            # Let it go whatever the reason (retrying a refused entry each pass would only repeat the refusal):
            # it comes back after its visibility timeout and the claim decides who runs it.
            self.drop(batch[int(failure["Id"])].receipt_handle)
            if not is_gone(failure):
                log.warning("could not %s a message: %s", what, failure.get("Message", failure.get("Code")))
        return len(ok)

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            try:
                self.renew()
            except Exception:  # the loop must outlive any one pass
                if not self._stop.is_set():
                    log.exception("visibility renewal failed")


def _batches(messages: list[_Held]) -> list[list[_Held]]:
    return [messages[start : start + BATCH] for start in range(0, len(messages), BATCH)]
