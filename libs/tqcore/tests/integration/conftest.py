"""Adapter tests run against a real emulator server, each with its own table, queues and bucket."""

from __future__ import annotations

from typing import Any

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.bootstrap import bootstrap
from tqcore.settings import CoreSettings
from tqdev.stack import unique_prefix


@pytest.fixture
def settings(emulator: str) -> CoreSettings:
    """Settings for fresh resources on the session's emulator."""
    made = CoreSettings(endpoint_url=emulator, prefix=unique_prefix(), resend_after_s=1)
    bootstrap(made)
    return made


@pytest.fixture
def store(settings: CoreSettings) -> DynamoTaskStore:
    """The DynamoDB task store."""
    return DynamoTaskStore(aws.client(settings, "dynamodb"), settings)


@pytest.fixture
def sqs(settings: CoreSettings) -> Any:
    """A raw SQS client, for looking at what the adapters did."""
    return aws.client(settings, "sqs")


@pytest.fixture
def queue(settings: CoreSettings, sqs: Any) -> SqsTaskQueue:
    """The SQS FIFO task queue."""
    return SqsTaskQueue(sqs, settings)
