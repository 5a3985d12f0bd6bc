"""SQS FIFO queues: one per pool and priority, each with a FIFO dead-letter queue behind a RedrivePolicy."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from opentelemetry import trace
from opentelemetry.trace import Span

from tqcore import tracing
from tqcore.adapters.group_commit import GroupCommit, Pending
from tqcore.dispatch import Dispatch
from tqcore.domain.model import Priority
from tqcore.domain.task import Task
from tqcore.errors import QueueUnavailable
from tqcore.ports import QueueDepth
from tqcore.settings import DEFAULT_POOL, CoreSettings

#: Marks the group id of a dead-letter record tq leaves itself.
RECORD_GROUP_MARK = ".dead."

#: A queue: its pool and priority.
_Queue = tuple[str, Priority]


class QueueUrls:
    """Queue URLs by pool and priority, looked up once per process."""

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        self._client = client
        self._settings = settings
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def queue(self, priority: Priority, pool: str = DEFAULT_POOL) -> str:
        """URL of a pool's queue of a priority."""
        return self._url(self._settings.queue_name(priority, pool))

    def dlq(self, priority: Priority, pool: str = DEFAULT_POOL) -> str:
        """URL of a pool's dead-letter queue of a priority."""
        return self._url(self._settings.dlq_name(priority, pool))

    def _url(self, name: str) -> str:
        with self._lock:
            if name not in self._urls:
                self._urls[name] = self._client.get_queue_url(QueueName=name)["QueueUrl"]
            return self._urls[name]


class SqsTaskQueue:
    """Sends each queued task to its pool's FIFO queue of its priority.

    ``MessageGroupId`` is the task id: FIFO orders (and holds back) messages only within a group, so
    one group per task means no task ever waits behind another, while SQS still deduplicates sends.
    """

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        self._client = client
        self._settings = settings
        self.urls = QueueUrls(client, settings)
        #: Concurrent sends of this process share ``SendMessageBatch`` calls, one group commit per queue (made
        #: on a queue's first send: pools come and go with the catalog).
        self._senders: dict[_Queue, GroupCommit[_Outgoing]] = {}
        self._senders_lock = threading.Lock()

    def check(self) -> None:
        """One ``GetQueueUrl`` (uncached): raises if SQS cannot be reached (readiness)."""
        self._client.get_queue_url(QueueName=self._settings.queue_name(Priority.NORMAL))

    def send(self, task: Task) -> None:
        """Send the dispatch for the task's next attempt: alone, or with the sends of other threads in one
        ``SendMessageBatch``. Returns once SQS accepted it; ``QueueUnavailable`` if it did not."""
        refused: str | None = self._sender((task.pool, task.priority)).submit(self._outgoing(task))
        if refused is not None:
            raise QueueUnavailable(f"could not enqueue task {task.id}: {refused}")

    def _sender(self, queue: _Queue) -> GroupCommit[_Outgoing]:
        with self._senders_lock:
            if queue not in self._senders:
                self._senders[queue] = GroupCommit(
                    partial(self._send_shared, queue),
                    _next_batch,
                    max_inflight=self._settings.send_max_inflight,
                    linger_s=self._settings.send_linger_ms / 1000,
                )
            return self._senders[queue]

    def _send_shared(self, queue: _Queue, batch: list[Pending[_Outgoing]]) -> None:
        """One flush of concurrent sends: a lone message as ``SendMessage``, more as one ``SendMessageBatch``."""
        sender = self._sender(queue)
        if len(batch) == 1:
            out = batch[0].request
            with trace.use_span(out.span, end_on_exit=True):
                try:
                    self._client.send_message(QueueUrl=self._queue_url(queue), **out.message())
                except (ClientError, BotoCoreError) as error:
                    sender.settle(batch[0], result=str(error))
                    return
            sender.settle(batch[0])
            return
        refused = self._send_chunk(queue, [pending.request for pending in batch])
        for n, pending in enumerate(batch):
            sender.settle(pending, result=refused.get(n))

    def send_batch(self, tasks: Sequence[Task]) -> None:
        """Send many dispatches with ``SendMessageBatch``: per queue, ten a call at most and within SQS's
        limit on a batch's total size. Each message carries its own task's trace context."""
        by_queue: dict[_Queue, list[Task]] = {}
        for task in tasks:
            by_queue.setdefault((task.pool, task.priority), []).append(task)
        failed: list[str] = []
        for queue, queued in by_queue.items():
            for chunk in _batches([self._outgoing(task) for task in queued]):
                refused = self._send_chunk(queue, chunk)
                failed += [f"{chunk[n].task.id}: {message}" for n, message in refused.items()]
        if failed:
            raise QueueUnavailable(f"could not enqueue {len(failed)} tasks, e.g. {failed[0]}")

    def _outgoing(self, task: Task, *, dead: bool = False) -> _Outgoing:
        """The task's message (for the dead-letter queue if ``dead``), its producer span started (a child of
        the task's own trace) and carried in the message's attributes."""
        dispatch = Dispatch.of(task)
        queue = (self._settings.dlq_name if dead else self._settings.queue_name)(task.priority, task.pool)
        span = tracing.start_producer_span("tq.dead_letter" if dead else "tq.enqueue", task, dispatch.attempt, queue)
        attributes = tracing.inject_into_message_attributes({}, trace.set_span_in_context(span))
        group = f"{task.id}{RECORD_GROUP_MARK}v{task.version}" if dead else task.id
        return _Outgoing(task, dispatch, dispatch.encode(), attributes, span, group)

    def _queue_url(self, queue: _Queue) -> str:
        pool, priority = queue
        return self.urls.queue(priority, pool)

    def _send_chunk(self, queue: _Queue, chunk: list[_Outgoing]) -> dict[int, str]:
        """One ``SendMessageBatch``; why SQS refused which messages (by place in ``chunk``). Ends each message's
        span."""
        entries = [{"Id": str(n), **out.message()} for n, out in enumerate(chunk)]
        try:
            answer = self._client.send_message_batch(QueueUrl=self._queue_url(queue), Entries=entries)
        except (ClientError, BotoCoreError) as error:
            refused = dict.fromkeys(range(len(chunk)), str(error))
        else:
            refused = {int(f["Id"]): str(f.get("Message", f.get("Code"))) for f in answer.get("Failed", [])}
            # An entry SQS neither accepted nor refused (never seen) must not count as sent.
            accepted = {int(s["Id"]) for s in answer.get("Successful", [])}
            refused |= {n: "no answer for this entry" for n in range(len(chunk)) if n not in accepted | refused.keys()}
        for n, out in enumerate(chunk):
            tracing.end_span(out.span, refused.get(n))
        return refused

    def dead_letter(self, task: Task) -> None:
        """Leave a record of a task that ran out of retries in its pool's dead-letter queue of its priority.

        Its group id is its own (``<task id>.dead.v<version>``): in a FIFO queue a record that the reaper keeps
        hidden must never hold back a later message of the same task.
        """
        self._send(task, dead=True)

    def depths(self, pools: Sequence[str] = (DEFAULT_POOL,)) -> list[QueueDepth]:
        """Every priority's queue of each pool, pool by pool and highest priority first, from
        ``GetQueueAttributes`` (two calls a queue: the queue and its dead-letter queue)."""
        try:
            return [self._depth(priority, pool) for pool in pools for priority in Priority]
        except (ClientError, BotoCoreError) as error:
            raise QueueUnavailable(f"could not read the queues' depths: {error}") from error

    def _depth(self, priority: Priority, pool: str) -> QueueDepth:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        queue = self._attributes(self.urls.queue(priority, pool), names)
        dlq = self._attributes(self.urls.dlq(priority, pool), names[:1])
        return QueueDepth(
            name=self._settings.queue_name(priority, pool),
            priority=priority,
            depth=queue["ApproximateNumberOfMessages"],
            in_flight=queue["ApproximateNumberOfMessagesNotVisible"],
            dlq_depth=dlq["ApproximateNumberOfMessages"],
            pool=pool,
        )

    def _attributes(self, url: str, names: list[str]) -> dict[str, int]:
        found = self._client.get_queue_attributes(QueueUrl=url, AttributeNames=names).get("Attributes", {})
        return {name: int(found.get(name, 0)) for name in names}

    def _send(self, task: Task, *, dead: bool = False) -> None:
        """One ``SendMessage`` (to the dead-letter queue if ``dead``), its client span a child of the producer's."""
        out = self._outgoing(task, dead=dead)
        with trace.use_span(out.span, end_on_exit=True):
            try:  # the queue's URL too: its first lookup is a call
                url = (self.urls.dlq if dead else self.urls.queue)(task.priority, task.pool)
                self._client.send_message(QueueUrl=url, **out.message())
            except (ClientError, BotoCoreError) as error:
                raise QueueUnavailable(f"could not enqueue task {task.id}: {error}") from error


@dataclass(frozen=True)
class _Outgoing:
    """One message to send: its task, dispatch, encoded body, ``MessageAttributes``, open span and group."""

    task: Task
    dispatch: Dispatch
    body: str
    attributes: dict[str, Any]
    span: Span
    group: str

    def message(self) -> dict[str, Any]:
        """The ``SendMessage`` arguments (and a batch entry's, but its ``Id``) other than the queue."""
        return {
            "MessageBody": self.body,
            "MessageGroupId": self.group,
            "MessageDeduplicationId": self.dispatch.deduplication_id,
            **_with_attributes(self.attributes),
        }

    @property
    def size(self) -> int:
        """Bytes SQS counts towards a batch's limit: the body and every attribute's name, type and value."""
        return len(self.body.encode()) + sum(
            len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
            for name, value in self.attributes.items()
        )


def _with_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """``MessageAttributes`` as a keyword argument, left out when there are none (tracing off)."""
    return {"MessageAttributes": attributes} if attributes else {}


#: SQS refuses a batch whose messages (bodies and attributes) add up to more than 256 KiB; keep a margin.
MAX_BATCH_BYTES = 240 * 1024


def _next_batch(queue: list[Pending[_Outgoing]]) -> list[Pending[_Outgoing]]:
    """Take the queue's first messages that fit one ``SendMessageBatch`` together."""
    size = len(next(_batches([pending.request for pending in queue])))
    batch = queue[:size]
    del queue[:size]
    return batch


def _batches(items: list[_Outgoing]) -> Iterator[list[_Outgoing]]:
    """Groups of at most ten messages that fit one ``SendMessageBatch`` together."""
    chunk: list[_Outgoing] = []
    size = 0
    for item in items:
        if chunk and (len(chunk) == 10 or size + item.size > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += item.size
    if chunk:
        yield chunk
