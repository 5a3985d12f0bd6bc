"""Seed 002 (d): DynamoDB throttling, injected at the adapter boundary of real clients, loses nothing accepted.

The injector answers a share of a real client's DynamoDB requests with the throttling error DynamoDB sends
(HTTP 400, ``ProvisionedThroughputExceededException``) before they leave the process, so botocore's retry
logic, the adapters' error mapping and everything above run exactly as they would against AWS.
"""

from __future__ import annotations

import collections
import json
import random
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import falcon.testing
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from prometheus_client import REGISTRY

from tq_gateway.app import build_app
from tq_gateway.settings import GatewaySettings
from tqcore.adapters import aws
from tqcore.adapters.dynamodb.queries import DynamoTaskQueries
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.bootstrap import bootstrap
from tqcore.clock import SystemClock, new_task_id
from tqcore.dispatch import Dispatch
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import TaskNotFound
from tqcore.domain.model import Priority, Status
from tqcore.domain.task import Task
from tqcore.errors import StoreUnavailable
from tqcore.settings import CoreSettings
from tqcore.usecases.execution import Attempts
from tqcore.usecases.service import Catalog, Tasks
from tqdev.stack import unique_prefix

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = Principal("alice", frozenset({"team-a"}))
THROTTLE_TYPE = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
THROTTLE_BODY = json.dumps({"__type": THROTTLE_TYPE, "message": "Rate of requests exceeds the allowed throughput."})
#: How DynamoDB reports a throttled item inside a transaction: the transaction is cancelled, and the reason
#: codes are ``ThrottlingError`` (on-demand) or ``ProvisionedThroughputExceeded`` (provisioned), without
#: "Exception" (the DynamoDB API reference, TransactionCanceledException).
CANCELLED_TYPE = "com.amazonaws.dynamodb.v20120810#TransactionCanceledException"
CANCELLED_BODY = json.dumps(
    {
        "__type": CANCELLED_TYPE,
        "message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
        "[ThrottlingError, None, None, None]",
        "CancellationReasons": [
            {"Code": "ThrottlingError", "Message": "Throughput exceeds the current capacity of your table or index."},
            {"Code": "None"},
            {"Code": "None"},
            {"Code": "None"},
        ],
    }
)


class _Body:
    """The raw body of a canned response (botocore reads it through ``stream()``)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data

    def read(self, *_: Any) -> bytes:
        return self._data


class Throttle:
    """Answers a seeded-random share of a client's DynamoDB requests with DynamoDB's throttling error.

    It hooks ``before-send``, which botocore emits for every HTTP attempt, retries included: a throttled
    request never reaches the emulator, just as a throttled request is never applied by DynamoDB.
    """

    def __init__(
        self, client: Any, *, rate: float, seed: int = 2, reply: tuple[str, str] = (THROTTLE_TYPE, THROTTLE_BODY)
    ) -> None:
        self.rate = rate
        self._error_type, self._body = reply
        #: The next this-many requests are throttled whatever the rate (a burst).
        self.burst = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        #: HTTP attempts by operation, and how many of them were throttled.
        self.sent: collections.Counter[str] = collections.Counter()
        self.throttled: collections.Counter[str] = collections.Counter()
        client.meta.events.register("before-send.dynamodb.*", self._before_send)

    def _before_send(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.sent[operation] += 1
            if self.burst > 0:
                self.burst -= 1
            elif self._random.random() >= self.rate:
                return None  # let it through
            self.throttled[operation] += 1
        headers = HTTPHeaders()
        headers["x-amzn-ErrorType"] = self._error_type
        headers["Content-Type"] = "application/x-amz-json-1.0"
        headers["x-amzn-RequestId"] = "throttled-by-test"
        return AWSResponse(request.url, 400, headers, _Body(self._body.encode()))


@pytest.fixture
def settings(emulator: str) -> GatewaySettings:
    """Gateway settings (a superset of the core ones) for fresh resources on the session's emulator."""
    made = GatewaySettings(endpoint_url=emulator, prefix=unique_prefix())
    bootstrap(made)
    return made


@pytest.fixture
def ddb(settings: CoreSettings) -> Any:
    """An un-throttled DynamoDB client, for setting up and for looking at what was written."""
    return aws.client(settings, "dynamodb")


@pytest.fixture
def registry(ddb: Any, settings: CoreSettings) -> DynamoRegistry:
    """The type catalog (un-throttled), with ``echo`` registered as an executor would."""
    made = DynamoRegistry(ddb, settings)
    made.register_types(["echo"], by="test:1")
    return made


def throttles_counted() -> float:
    """``tq_dynamodb_throttles_total`` for transactions, in this process."""
    return REGISTRY.get_sample_value("tq_dynamodb_throttles_total", {"operation": "TransactWriteItems"}) or 0.0


def writes(by_operation: collections.Counter[str]) -> int:
    """The commits among counted requests: a lone one is an ``UpdateItem``, shared ones a ``TransactWriteItems``."""
    return by_operation["TransactWriteItems"] + by_operation["UpdateItem"]


def throttled_client(settings: CoreSettings, rate: float, **options: Any) -> tuple[Any, Throttle]:
    client = aws.client(settings, "dynamodb")  # the production client: standard mode, 4 retries
    return client, Throttle(client, rate=rate, **options)


def gateway(settings: GatewaySettings, client: Any, registry: DynamoRegistry) -> falcon.testing.TestClient:
    """The gateway's app over real adapters, its task store on ``client``."""
    app = build_app(
        settings,
        store=DynamoTaskStore(client, settings),
        queries=DynamoTaskQueries(client, settings),
        queue=SqsTaskQueue(aws.client(settings, "sqs"), settings),
        registry=registry,
        clock=SystemClock(),
    )
    return falcon.testing.TestClient(app, headers={"Authorization": "Bearer dev-alice"})


def task_items(ddb: Any, settings: CoreSettings) -> list[str]:
    """Keys of every task, event, lease and idempotency item in the table (a full scan)."""
    found, start = [], None
    while True:
        page = ddb.scan(TableName=settings.table_name, **({"ExclusiveStartKey": start} if start else {}))
        found += [
            f"{item['PK']['S']}/{item['SK']['S']}"
            for item in page["Items"]
            if item["PK"]["S"].startswith(("TASK#", "IDEM#"))
        ]
        start = page.get("LastEvaluatedKey")
        if not start:
            return found


def messages_waiting(sqs: Any, settings: CoreSettings) -> int:
    url = sqs.get_queue_url(QueueName=settings.queue_name(Priority.NORMAL))["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def test_d_a_fully_throttled_store_is_a_503_with_retry_after_and_writes_nothing(
    settings: GatewaySettings, ddb: Any, registry: DynamoRegistry
) -> None:
    # Given a gateway whose every DynamoDB write is throttled (the catalog read is not)
    client, throttle = throttled_client(settings, rate=1.0)
    api = gateway(settings, client, registry)
    counted_before = throttles_counted()
    # When a task is submitted (with an idempotency key, so that record would be written too)
    response = api.simulate_post(
        "/v1/tasks", json={"type": "echo", "group": "team-a", "payload": {"x": 1}}, headers={"Idempotency-Key": "k-1"}
    )
    # Then botocore sent the one transaction five times, all throttled: standard retry mode with the
    # adapters' ``max_attempts: 4``, which botocore counts as retries after the first attempt
    assert throttle.sent == {"TransactWriteItems": 5}
    assert throttle.throttled == throttle.sent
    # ... and the process's metrics counted each throttled try
    assert throttles_counted() == counted_before + 5
    # and the client is told to come back later, as problem+json without internals
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json
    assert (problem["status"], problem["type"]) == (503, "urn:tq:problem:unavailable")
    assert "Traceback" not in response.text
    # and nothing was written or sent: no task, no event, no idempotency record, no message
    assert task_items(ddb, settings) == []
    assert messages_waiting(aws.client(settings, "sqs"), settings) == 0


def test_d_a_transaction_throttled_as_dynamodb_reports_it_is_a_503_too(
    settings: GatewaySettings, ddb: Any, registry: DynamoRegistry
) -> None:
    # Given a gateway whose transactions are cancelled for throttling, the way DynamoDB reports a throttled
    # item inside TransactWriteItems (botocore does not retry TransactionCanceledException)
    client, throttle = throttled_client(settings, rate=1.0, reply=(CANCELLED_TYPE, CANCELLED_BODY))
    api = gateway(settings, client, registry)
    counted_before = throttles_counted()
    # When a task is submitted with an idempotency key (task item and key record: one transaction; an unkeyed
    # submit is a lone PutItem, whose throttling the tests above cover)
    response = api.simulate_post("/v1/tasks", json={"type": "echo", "group": "team-a", "idempotency_key": "k-1"})
    # Then nothing was written, and the client is told to come back later, as for any other throttle
    assert throttle.throttled == {"TransactWriteItems": 1}
    assert throttles_counted() == counted_before + 1  # counted from the cancellation's reasons
    assert task_items(ddb, settings) == []
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"


def test_d_under_30_percent_throttling_every_accepted_submit_is_durable(
    settings: GatewaySettings, ddb: Any, registry: DynamoRegistry
) -> None:
    # Given the submit use case over a store 30 % of whose requests are throttled
    client, throttle = throttled_client(settings, rate=0.3)
    ids: list[str] = []
    ids_lock = threading.Lock()

    def new_id() -> str:
        made = new_task_id()
        with ids_lock:
            ids.append(made)
        return made

    sqs = aws.client(settings, "sqs")
    tasks = Tasks(
        DynamoTaskStore(client, settings), SqsTaskQueue(sqs, settings), Catalog(registry), SystemClock(), new_id
    )

    def submit(n: int) -> Task | StoreUnavailable:
        cmd = SubmitTask(type="echo", group="team-a", payload={"n": n}, idempotency_key=f"k-{n}")
        try:
            return tasks.submit(cmd, ALICE).task
        except StoreUnavailable as error:
            return error

    # When 50 submits arrive, ten at a time
    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(submit, range(50)))
    accepted = {task.payload["n"]: task for task in outcomes if isinstance(task, Task)}
    refused = [n for n, outcome in enumerate(outcomes) if isinstance(outcome, StoreUnavailable)]
    # Then each was either accepted or refused as unavailable (a 503), nothing else
    assert len(accepted) + len(refused) == 50
    assert throttle.throttled["TransactWriteItems"] > 0, "the injector throttled nothing"
    # When one more submit meets a burst that outlasts botocore's five attempts
    throttle.burst = 5
    outcome = submit(50)
    # Then it is refused as unavailable (5 out of 5 attempts are rare at 30 %, so this makes one sure)
    assert isinstance(outcome, StoreUnavailable)
    refused.append(50)
    # and every accepted task is durable and queued, while a refused submit left nothing behind
    reader = DynamoTaskStore(ddb, settings)
    for task in accepted.values():
        assert reader.get(task.id).status is Status.QUEUED
    refused_ids = set(ids) - {task.id for task in accepted.values()}
    assert len(refused_ids) == len(refused)
    for task_id in refused_ids:
        with pytest.raises(TaskNotFound):
            reader.get(task_id)
        assert reader.events(task_id) == []
    assert all(reader.idempotency_record("team-a", f"k-{n}") is None for n in refused)

    # When the refused clients retry with the same idempotency keys until they are accepted (recovery)
    for n in refused:
        for _ in range(10):
            outcome = submit(n)
            if isinstance(outcome, Task):
                accepted[n] = outcome
                break
    # Then all 51 are accepted, each exactly once, and each was sent to its queue once
    assert sorted(accepted) == list(range(51))
    assert len({task.id for task in accepted.values()}) == 51
    tasks_in_table = {key.split("/")[0] for key in task_items(ddb, settings) if key.endswith("/TASK")}
    assert tasks_in_table == {f"TASK#{task.id}" for task in accepted.values()}
    assert messages_waiting(sqs, settings) == 51


def test_d_under_50_percent_throttling_the_executor_records_every_outcome(settings: GatewaySettings, ddb: Any) -> None:
    # Given 20 queued tasks and an executor whose store has half its requests throttled
    reader = DynamoTaskStore(ddb, settings)
    client, throttle = throttled_client(settings, rate=0.5)
    attempts = Attempts(
        DynamoTaskStore(client, settings),
        SqsTaskQueue(aws.client(settings, "sqs"), settings),
        SystemClock(),
        worker="host-t:1",
        lease_s=settings.lease_s,
    )

    def new_dispatch(n: int) -> Dispatch:
        cmd = SubmitTask(type="echo", group="team-a", payload={"n": n})
        task = Task.submit(
            task_id=new_task_id(),
            owner="alice",
            now=datetime.now(UTC),
            submitted=cmd.model_dump(mode="json"),
            **cmd.task_fields(),
        )
        reader.create(task)
        return Dispatch.of(task.committed())

    def run(dispatch: Dispatch) -> str:
        try:
            task = attempts.claim(dispatch)
        except StoreUnavailable:
            return "claim unavailable"  # RedeliverOnError gives the message back to SQS
        assert task is not None
        done = attempts.succeed(task, {"n": task.payload["n"]})  # may raise: that is a finding, not retried here
        assert done is not None
        assert done.status is Status.SUCCEEDED
        return "succeeded"

    dispatches = [new_dispatch(n) for n in range(20)]
    # When it runs all 20
    with ThreadPoolExecutor(10) as pool:
        results = dict(zip((d.task_id for d in dispatches), pool.map(run, dispatches), strict=True))
    # Then every claimed attempt's success is recorded (the local outcome retries rode the throttle out)
    assert writes(throttle.throttled) > 0, "the injector throttled nothing"
    for task_id, result in results.items():
        stored = reader.get(task_id)
        if result == "succeeded":
            assert (stored.status, stored.result, stored.worker) == (Status.SUCCEEDED, stored.payload, None)
        else:
            # and a claim that could not be written left the task queued for the redelivery: nothing lost
            assert (stored.status, stored.version) == (Status.QUEUED, 2)
    assert list(results.values()).count("succeeded") >= 10, results

    # Given a task claimed between throttles, When a burst outlasts botocore's five attempts at its outcome
    throttle.rate = 0.0
    task = attempts.claim(new_dispatch(20))
    assert task is not None
    before_sent, before_throttled = writes(throttle.sent), writes(throttle.throttled)
    throttle.burst = 5
    done = attempts.succeed(task, {"n": 20})
    # Then the executor's own retry (after OUTCOME_RETRY_PAUSES_S[0]) writes it: five throttled sends, then one more
    assert done is not None
    assert done.status is Status.SUCCEEDED
    assert writes(throttle.sent) - before_sent == 6
    assert writes(throttle.throttled) - before_throttled == 5
    assert reader.get(task.id).status is Status.SUCCEEDED
