"""A FIFO-capable Dramatiq broker built on dramatiq-sqs (which has no FIFO support).

What changes from ``dramatiq_sqs.SQSBroker``:
- queues are tq's existing FIFO queues of the executor's pool (one per priority, created by bootstrap), never
  created here;
- ``enqueue`` sets ``MessageGroupId`` (the task id) and ``MessageDeduplicationId`` and no ``DelaySeconds``;
- messages are received with a visibility timeout equal to the lease, not 12 hours; a ``VisibilityKeeper`` keeps
  running ones hidden until acked and gives back those buffered unstarted for about a lease;
- ``nack`` leaves the message to SQS (redelivered after a backoff, dead-lettered by the queue's
  RedrivePolicy) instead of copying it to a ``_dlq`` queue of its own;
- bodies are plain JSON (no base64), so a payload near the API's body limit still fits a message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

import dramatiq
from botocore.exceptions import BotoCoreError, ClientError
from dramatiq.common import iter_queue
from dramatiq_sqs.broker import MAX_PREFETCH, SQSBroker, SQSConsumer, _SQSMessage

from tq_executor.visibility import ReceivedMessage, VisibilityKeeper, is_gone
from tqcore.adapters import aws
from tqcore.adapters.sqs.task_queue import QueueUrls
from tqcore.dispatch import Dispatch
from tqcore.domain.model import Priority
from tqcore.settings import DEFAULT_POOL, CoreSettings
from tqcore.tracing import MESSAGE_ATTRIBUTE_NAMES

log = logging.getLogger(__name__)

#: A nacked message comes back after a lease per receive, at most this many seconds later.
NACK_BACKOFF_MAX_S = 900
#: Acked messages are deleted in batches of this many (the SQS maximum) ...
ACK_BATCH = 10
#: ... or after this many seconds, whichever comes first.
ACK_FLUSH_S = 0.1
#: Once receiving has stopped, how often a consumer thread looks whether it should end.
STOPPED_POLL_S = 0.05
#: While fewer than half its prefetch is free, a consumer waits at most this long for more free slots before it
#: receives: under load one ``ReceiveMessage`` then brings several messages, not one per finished task.
RECEIVE_GATHER_S = 0.05


class FifoSQSBroker(SQSBroker):  # type: ignore[misc]
    """Dramatiq broker over one pool's SQS FIFO queues; Dramatiq queue names are priority names."""

    def __init__(
        self,
        settings: CoreSettings,
        *,
        middleware: list[dramatiq.Middleware] | None = None,
        keeper: VisibilityKeeper | None = None,
        pool: str = DEFAULT_POOL,
    ) -> None:
        super().__init__(middleware=middleware, region_name=settings.region, endpoint_url=settings.endpoint_url)
        #: Keeps every received message hidden until it is acked (``None``: only the receive hides it).
        self.keeper = keeper
        self.sqs = aws.resource(settings, "sqs")
        self._urls = QueueUrls(self.sqs.meta.client, settings)
        #: The pool whose queues this broker reads (and sends to).
        self.pool = pool
        self._lease_s = settings.lease_s
        self._receiving_stopped = threading.Event()

    def stop_receiving(self) -> None:
        """From now on no consumer receives: at shutdown, running attempts finish but no new one starts.

        (Dramatiq's own ``pause`` makes each consumer thread sleep its 3 s restart delay before it can stop.)
        """
        self._receiving_stopped.set()

    @property
    def consumer_class(self) -> type[SQSConsumer]:
        return FifoSQSConsumer

    def _ensure_queue(self, queue_name: str) -> None:
        if queue_name not in self.queue_names:
            raise dramatiq.QueueNotFound(queue_name)  # type: ignore[no-untyped-call]
        if queue_name not in self.queues:
            self.queues[queue_name] = self.sqs.Queue(self._urls.queue(Priority(queue_name), self.pool))

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 20000) -> dramatiq.Consumer:
        self._ensure_queue(queue_name)
        return FifoSQSConsumer(
            self.queues[queue_name],
            min(prefetch, MAX_PREFETCH),
            min(timeout, 20000),
            dead_letter_queue=None,
            visibility_timeout=self._lease_s,
            receiving_stopped=self._receiving_stopped,
            keeper=self.keeper,
        )

    def enqueue(self, message: dramatiq.Message[Any], *, delay: int | None = None) -> dramatiq.Message[Any]:
        if delay:
            raise ValueError("FIFO queues have no per-message delay; tq delays through its due-time index")
        self._ensure_queue(message.queue_name)
        dispatch = Dispatch.from_dict(message.args[0])
        self.emit_before("enqueue", message, delay)
        self.queues[message.queue_name].send_message(
            MessageBody=message.encode().decode(),
            MessageGroupId=dispatch.task_id,
            MessageDeduplicationId=dispatch.deduplication_id,
        )
        self.emit_after("enqueue", message, delay)
        return message


def give_back_unstarted(worker: dramatiq.Worker) -> int:
    """Make the messages ``worker`` received but has not started visible again at once; how many.

    At shutdown Dramatiq does this itself only once every worker thread has stopped, that is after the grace:
    until then those tasks would wait, invisible, for an executor that will not run them.
    """
    by_queue: dict[str, list[Any]] = {}
    for item in iter_queue(worker.work_queue):  # type: ignore[no-untyped-call]
        by_queue.setdefault(item.message.queue_name, []).append(item.message)
    for queue_name, messages in by_queue.items():
        worker.consumers[queue_name].requeue_messages(messages)
    return sum(len(messages) for messages in by_queue.values())


class ReceiveGather:
    """When a consumer receives: at once while at least half its prefetch is free (an idle executor, a light
    load: no added latency), else once a free slot has waited ``RECEIVE_GATHER_S`` for company."""

    def __init__(self, prefetch: int, wait_s: float = RECEIVE_GATHER_S) -> None:
        self._enough = max(1, (prefetch + 1) // 2)
        self._wait_s = wait_s
        #: Since when a free slot waits (monotonic), or ``None``.
        self._waiting_since: float | None = None

    def ready(self, free: int, now: float) -> bool:
        """Whether to receive now, with ``free`` slots."""
        if free < 1:
            self._waiting_since = None
            return False
        if free < self._enough:
            if self._waiting_since is None:
                self._waiting_since = now
            if now - self._waiting_since < self._wait_s:
                return False
        self._waiting_since = None
        return True


class FifoSQSConsumer(SQSConsumer):  # type: ignore[misc]
    """Receives with the lease as visibility timeout; plain JSON bodies; nack leaves redelivery to SQS.

    Acks are deleted in batches of up to ten (``DeleteMessageBatch``) at most ``ACK_FLUSH_S`` after the
    ack: one call per ten tasks instead of one per task. A crash before the flush only means the message
    is received again after its visibility timeout, and the claim (the task is no longer ``queued``)
    drops it without running anything.
    """

    def __init__(
        self,
        *args: Any,
        receiving_stopped: threading.Event | None = None,
        keeper: VisibilityKeeper | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._receiving_stopped = receiving_stopped or threading.Event()
        self._keeper = keeper
        self._client = self.queue.meta.client
        self._gather = ReceiveGather(self.prefetch)
        self._acks: list[str] = []
        self._acks_lock = threading.Lock()
        self._closed = threading.Event()
        self._flusher = threading.Thread(target=self._flush_periodically, name="ack-flusher", daemon=True)
        self._flusher.start()

    def __next__(self) -> dramatiq.Message[Any] | None:
        message: dramatiq.Message[Any]
        if self._receiving_stopped.is_set():  # shutting down: hand out nothing more
            self._give_back()
            time.sleep(STOPPED_POLL_S)
            return None
        try:
            message = self.messages.popleft()
            self.misses = 0
            return message
        except IndexError:
            pass
        free = self.prefetch - self.message_refc
        if not self._gather.ready(free, time.monotonic()):
            time.sleep(0.02)  # the slots are busy: wait for worker threads instead of spinning
            return None
        asked_at = time.monotonic()  # the messages stay hidden until at least the visibility timeout after this
        received = self._client.receive_message(
            QueueUrl=self.queue.url,
            MaxNumberOfMessages=free,
            WaitTimeSeconds=self.wait_time_seconds,
            VisibilityTimeout=self.visibility_timeout,
            AttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=MESSAGE_ATTRIBUTE_NAMES,
        )
        for raw in received.get("Messages", []):
            self._decode(ReceivedMessage.of(raw, self.queue.url, self._client), asked_at + self.visibility_timeout)
        if self._receiving_stopped.is_set():  # stopped during the long poll
            self._give_back()
            return None
        try:
            message = self.messages.popleft()
            self.misses = 0
            return message
        except IndexError:
            return None

    def requeue(self, messages: Iterable[_SQSMessage]) -> None:
        """Make received messages visible again at once (for other executors), saying which SQS refused.

        Never raises: Dramatiq calls this while shutting down, and an error would skip the rest of the shutdown;
        a message not given back comes back once its visibility timeout runs out.
        """
        pending = list(messages)
        for message in pending:
            self._let_go(message._sqs_message)
        for start in range(0, len(pending), ACK_BATCH):
            batch = pending[start : start + ACK_BATCH]
            try:
                response = self._client.change_message_visibility_batch(
                    QueueUrl=self.queue.url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m._sqs_message.receipt_handle, "VisibilityTimeout": 0}
                        for i, m in enumerate(batch)
                    ],
                )
            except (ClientError, BotoCoreError) as error:
                log.warning("could not give back %d messages: %s", len(batch), error)
                continue
            self.message_refc -= len(response.get("Successful", []))
            for failure in response.get("Failed", []):  # it comes back once its visibility timeout runs out
                level = logging.DEBUG if is_gone(failure) else logging.WARNING
                log.log(level, "could not give back a message: %s", failure.get("Message", failure.get("Code")))

    def _give_back(self) -> None:
        """Make the messages received but not handed out visible again at once, for other executors."""
        buffered: list[_SQSMessage] = list(self.messages)
        self.messages.clear()
        if buffered:
            self.requeue(buffered)

    def _decode(self, sqs_message: ReceivedMessage, hidden_until: float) -> None:
        try:
            decoded = dramatiq.Message.decode(sqs_message.body.encode())
            # Decoded once, here: the actor (and the tracing middleware) get the ``Dispatch`` itself.
            decoded = decoded.copy(args=(Dispatch.from_dict(decoded.args[0]),))
        except Exception:  # noqa: BLE001 - any undecodable body is poison
            # Make it visible again at once: after max_receives receives the RedrivePolicy moves it to
            # the dead-letter queue, where the reaper settles it.
            log.error("undecodable message %s; leaving it to the dead-letter queue", sqs_message.message_id)
            self._change_visibility(sqs_message, 0)
            return
        self.messages.append(_SQSMessage(sqs_message, decoded))
        self.message_refc += 1
        if self._keeper is not None:
            self._keeper.hold(sqs_message.queue_url, sqs_message.receipt_handle, hidden_until, sqs_message.message_id)

    def _let_go(self, sqs_message: ReceivedMessage) -> None:
        """The message is no longer ours to keep hidden (acked, nacked, given back)."""
        if self._keeper is not None:
            self._keeper.drop(sqs_message.receipt_handle)

    def ack(self, message: _SQSMessage) -> None:
        self._let_go(message._sqs_message)
        with self._acks_lock:
            self._acks.append(message._sqs_message.receipt_handle)
            full = len(self._acks) >= ACK_BATCH
        self.message_refc -= 1
        if full:
            self._flush()

    def close(self) -> None:
        self._closed.set()
        self._flush()
        self._give_back()  # what dramatiq_sqs's own close does: nothing buffered stays invisible

    def _flush_periodically(self) -> None:
        while not self._closed.wait(ACK_FLUSH_S):
            self._flush()

    def _flush(self) -> None:
        while True:
            with self._acks_lock:
                batch, self._acks = self._acks[:ACK_BATCH], self._acks[ACK_BATCH:]
            if not batch:
                return
            try:
                response = self._client.delete_message_batch(
                    QueueUrl=self.queue.url,
                    Entries=[{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(batch)],
                )
            except (ClientError, BotoCoreError) as error:
                # Keep them for the next flush: an acked message left undeleted holds back its task's FIFO
                # group (a repeating task's next run) until its visibility runs out. A receipt that went stale
                # meanwhile fails per entry below, and is dropped then.
                log.warning("could not delete %d acked messages (retrying): %s", len(batch), error)
                with self._acks_lock:
                    self._acks[:0] = batch
                return
            for failure in response.get("Failed", []):
                # A stale receipt (the message was given back or its visibility ran out, and it was received
                # again) is harmless: the store, not the message, decides who runs what.
                level = logging.DEBUG if is_gone(failure) else logging.WARNING
                log.log(level, "could not delete an acked message: %s", failure.get("Message", failure.get("Code")))

    def nack(self, message: _SQSMessage) -> None:
        # An actor raises when the store or queue is unreachable: back off a lease per receive (capped), so
        # an outage of a few minutes does not burn the receives that send a message to the DLQ.
        self._let_go(message._sqs_message)
        receives = int(message._sqs_message.attributes.get("ApproximateReceiveCount", "1"))
        self._change_visibility(message._sqs_message, min(NACK_BACKOFF_MAX_S, self.visibility_timeout * receives))
        self.message_refc -= 1

    def _change_visibility(self, sqs_message: ReceivedMessage, seconds: int) -> None:
        try:
            sqs_message.change_visibility(VisibilityTimeout=seconds)
        except (ClientError, BotoCoreError) as error:  # a stale receipt (given back): no longer ours, harmless
            level = logging.DEBUG if isinstance(error, ClientError) and is_gone(error) else logging.WARNING
            log.log(level, "could not change visibility of %s: %s", sqs_message.message_id, error)
