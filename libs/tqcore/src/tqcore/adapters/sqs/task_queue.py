"""SQS FIFO queues: one per priority, each with a FIFO dead-letter queue behind a RedrivePolicy."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tqcore.dispatch import Dispatch
from tqcore.domain.errors import QueueUnavailable
from tqcore.domain.model import Priority
from tqcore.domain.task import Task
from tqcore.ports import QueueDepth
from tqcore.settings import CoreSettings

#: Marks the group id of a dead-letter record tq leaves itself.
RECORD_GROUP_MARK = ".dead."


class QueueUrls:
    """Queue URLs by priority, looked up once per process."""

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        self._client = client
        self._settings = settings
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def queue(self, priority: Priority) -> str:
        """URL of a priority's queue."""
        return self._url(self._settings.queue_name(priority))

    def dlq(self, priority: Priority) -> str:
        """URL of a priority's dead-letter queue."""
        return self._url(self._settings.dlq_name(priority))

    def _url(self, name: str) -> str:
        with self._lock:
            if name not in self._urls:
                self._urls[name] = self._client.get_queue_url(QueueName=name)["QueueUrl"]
            return self._urls[name]


class SqsTaskQueue:
    """Sends each queued task to its priority's FIFO queue.

    ``MessageGroupId`` is the task id: FIFO orders (and holds back) messages only within a group, so
    one group per task means no task ever waits behind another, while SQS still deduplicates sends.
    """

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        self._client = client
        self._settings = settings
        self.urls = QueueUrls(client, settings)

    def send(self, task: Task) -> None:
        """Send the dispatch for the task's next attempt."""
        self._send(self.urls.queue, task, task.id)

    def send_batch(self, tasks: Sequence[Task]) -> None:
        """Send many dispatches with ``SendMessageBatch``: per queue, ten a call at most and within SQS's
        limit on a batch's total size."""
        by_queue: dict[Priority, list[Task]] = {}
        for task in tasks:
            by_queue.setdefault(task.priority, []).append(task)
        failed: list[str] = []
        for priority, queued in by_queue.items():
            for chunk in _batches([(task, Dispatch.of(task)) for task in queued]):
                entries = [
                    {
                        "Id": str(n),
                        "MessageBody": body,
                        "MessageGroupId": task.id,
                        "MessageDeduplicationId": dispatch.deduplication_id,
                    }
                    for n, (task, dispatch, body) in enumerate(chunk)
                ]
                try:
                    answer = self._client.send_message_batch(QueueUrl=self.urls.queue(priority), Entries=entries)
                except (ClientError, BotoCoreError) as error:
                    failed += [f"{task.id}: {error}" for task, _, _ in chunk]
                    continue
                failed += [
                    f"{chunk[int(f['Id'])][0].id}: {f.get('Message', f.get('Code'))}" for f in answer.get("Failed", [])
                ]
        if failed:
            raise QueueUnavailable(f"could not enqueue {len(failed)} tasks, e.g. {failed[0]}")

    def dead_letter(self, task: Task) -> None:
        """Leave a record of a task that ran out of retries in its priority's dead-letter queue.

        Its group id is its own (``<task id>.dead.v<version>``): in a FIFO queue a record that the reaper keeps
        hidden must never hold back a later message of the same task.
        """
        self._send(self.urls.dlq, task, f"{task.id}{RECORD_GROUP_MARK}v{task.version}")

    def depths(self) -> list[QueueDepth]:
        """Every priority's queue, highest priority first, from ``GetQueueAttributes`` (two calls a priority:
        the queue and its dead-letter queue)."""
        try:
            return [self._depth(priority) for priority in Priority]
        except (ClientError, BotoCoreError) as error:
            raise QueueUnavailable(f"could not read the queues' depths: {error}") from error

    def _depth(self, priority: Priority) -> QueueDepth:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        queue = self._attributes(self.urls.queue(priority), names)
        dlq = self._attributes(self.urls.dlq(priority), names[:1])
        return QueueDepth(
            name=self._settings.queue_name(priority),
            priority=priority,
            depth=queue["ApproximateNumberOfMessages"],
            in_flight=queue["ApproximateNumberOfMessagesNotVisible"],
            dlq_depth=dlq["ApproximateNumberOfMessages"],
        )

    def _attributes(self, url: str, names: list[str]) -> dict[str, int]:
        found = self._client.get_queue_attributes(QueueUrl=url, AttributeNames=names).get("Attributes", {})
        return {name: int(found.get(name, 0)) for name in names}

    def _send(self, url_of: Callable[[Priority], str], task: Task, group: str) -> None:
        dispatch = Dispatch.of(task)
        try:
            self._client.send_message(
                QueueUrl=url_of(task.priority),
                MessageBody=dispatch.encode(),
                MessageGroupId=group,
                MessageDeduplicationId=dispatch.deduplication_id,
            )
        except (ClientError, BotoCoreError) as error:
            raise QueueUnavailable(f"could not enqueue task {task.id}: {error}") from error


#: SQS refuses a batch whose messages add up to more than 256 KiB; keep a margin for attributes.
MAX_BATCH_BYTES = 240 * 1024


def _batches(items: list[tuple[Task, Dispatch]]) -> Iterator[list[tuple[Task, Dispatch, str]]]:
    """Groups of at most ten encoded dispatches whose bodies fit one ``SendMessageBatch`` together."""
    chunk: list[tuple[Task, Dispatch, str]] = []
    size = 0
    for task, dispatch in items:
        body = dispatch.encode()
        length = len(body.encode())
        if chunk and (len(chunk) == 10 or size + length > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((task, dispatch, body))
        size += length
    if chunk:
        yield chunk
