"""Adapter tests run against a real emulator server, each with its own table, queues and bucket."""

from __future__ import annotations

from typing import Any

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.bootstrap import bootstrap
from tqcore.ports import TaskStore
from tqcore.settings import CoreSettings
from tqcore.testing import InMemoryTaskStore
from tqdev.stack import unique_prefix


@pytest.fixture
def settings(emulator: str) -> CoreSettings:
    """Settings for fresh resources on the session's emulator."""
    made = CoreSettings(endpoint_url=emulator, prefix=unique_prefix(), resend_after_s=1)
    bootstrap(made)
    return made


@pytest.fixture
def dynamo_store(settings: CoreSettings) -> DynamoTaskStore:
    """The DynamoDB task store."""
    return DynamoTaskStore(aws.client(settings, "dynamodb"), settings)


@pytest.fixture(params=["dynamodb", "in-memory"])
def store(request: pytest.FixtureRequest, settings: CoreSettings) -> TaskStore:
    """Each store test runs against DynamoDB and against the in-memory fake: one contract for both."""
    if request.param == "in-memory":
        return InMemoryTaskStore(resend_after_s=settings.resend_after_s)
    return DynamoTaskStore(aws.client(settings, "dynamodb"), settings)


@pytest.fixture
def sqs(settings: CoreSettings) -> Any:
    """A raw SQS client, for looking at what the adapters did."""
    return aws.client(settings, "sqs")


@pytest.fixture
def queue(settings: CoreSettings, sqs: Any) -> SqsTaskQueue:
    """The SQS FIFO task queue."""
    return SqsTaskQueue(sqs, settings)
