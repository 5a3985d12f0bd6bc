"""Reading the FIFO dead-letter queues (the reaper settles what SQS moved there)."""

from __future__ import annotations

import json
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tqcore.adapters.sqs.task_queue import RECORD_GROUP_MARK, QueueUrls
from tqcore.dispatch import Dispatch
from tqcore.domain.model import Priority
from tqcore.ports import DeadLetter
from tqcore.settings import DEFAULT_POOL, CoreSettings

log = logging.getLogger(__name__)


class SqsDeadLetters:
    """The dead-letter queue of each pool and priority."""

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        self._client = client
        self._urls = QueueUrls(client, settings)

    def receive(self, priority: Priority, *, hide_s: int, pool: str = DEFAULT_POOL) -> list[DeadLetter]:
        """Up to ten dead letters (no long poll: the reaper comes back every pass)."""
        try:
            response = self._client.receive_message(
                QueueUrl=self._urls.dlq(priority, pool),
                MaxNumberOfMessages=10,
                WaitTimeSeconds=0,
                VisibilityTimeout=hide_s,
                AttributeNames=["MessageGroupId", "ApproximateReceiveCount"],
            )
        except (ClientError, BotoCoreError) as error:
            log.warning("could not read pool %s's %s dead-letter queue: %s", pool, priority.value, error)
            return []
        return [_letter(priority, pool, message) for message in response.get("Messages", [])]

    def discard(self, letter: DeadLetter) -> None:
        """Delete a dead letter."""
        try:
            self._client.delete_message(
                QueueUrl=self._urls.dlq(letter.priority, letter.pool), ReceiptHandle=letter.receipt
            )
        except (ClientError, BotoCoreError) as error:
            log.warning("could not delete a dead letter: %s", error)


def _letter(priority: Priority, pool: str, message: dict[str, Any]) -> DeadLetter:
    attributes = message.get("Attributes", {})
    try:
        dispatch: Dispatch | None = Dispatch.from_dict(json.loads(message["Body"])["args"][0])
    except (ValueError, KeyError, IndexError, TypeError):
        dispatch = None
    group: str | None = attributes.get("MessageGroupId")
    record = group is not None and RECORD_GROUP_MARK in group
    return DeadLetter(
        priority=priority,
        receipt=message["ReceiptHandle"],
        task_id=group.split(RECORD_GROUP_MARK)[0] if group and record else group,
        receives=int(attributes.get("ApproximateReceiveCount", "0")),
        dispatch=dispatch,
        record=record,
        pool=pool,
    )
