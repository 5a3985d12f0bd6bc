"""The fault-injection proxy (tqdev.faults) in front of a real emulator: boto3 clients see what it injects."""

from __future__ import annotations

import http.client
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tqdev.faults import Fault, FaultProxy

pytestmark = pytest.mark.integration

#: One try per call: the tests see each injected fault instead of botocore's retry of it.
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=30)
#: tq's own retry policy (tqcore.adapters.aws): injected throttles and 500s are retried away.
RETRIES = Config(retries={"mode": "standard", "max_attempts": 4}, read_timeout=30)


@pytest.fixture(scope="module")
def proxy(emulator: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=emulator, seed=7) as started:
        yield started


@pytest.fixture(autouse=True)
def no_rules(proxy: FaultProxy) -> Iterator[None]:
    proxy.clear()
    yield
    proxy.clear()


def aws(proxy: FaultProxy, service: str, config: Config = NO_RETRIES) -> Any:
    return boto3.client(service, endpoint_url=proxy.url, region_name="us-east-1", config=config)


@pytest.fixture(scope="module")
def table(proxy: FaultProxy) -> str:
    name = f"tq-test-{uuid.uuid4().hex[:8]}"
    db = aws(proxy, "dynamodb")
    db.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def put(db: Any, table: str, key: str) -> None:
    db.put_item(TableName=table, Item={"PK": {"S": key}})


def exists(db: Any, table: str, key: str) -> bool:
    return "Item" in db.get_item(TableName=table, Key={"PK": {"S": key}}, ConsistentRead=True)


def test_an_injected_throttle_is_what_botocore_sees_and_retries(proxy: FaultProxy, table: str) -> None:
    rule = proxy.inject(Fault.error("ThrottlingException"), service="dynamodb", operation="PutItem", times=1)
    with pytest.raises(ClientError) as refused:
        put(aws(proxy, "dynamodb"), table, "throttled")
    assert refused.value.response["Error"]["Code"] == "ThrottlingException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert rule.hits == 1

    # Given the same fault again, tq's retry policy rides over it: one refused try, one forwarded
    proxy.inject(Fault.error("ProvisionedThroughputExceededException"), service="dynamodb", times=1)
    before = proxy.calls.get(("dynamodb", "PutItem"), 0)
    put(aws(proxy, "dynamodb", RETRIES), table, "retried")
    assert proxy.calls[("dynamodb", "PutItem")] - before == 2
    assert exists(aws(proxy, "dynamodb"), table, "retried")


@pytest.mark.parametrize(
    ("service", "code", "status"),
    [("sqs", "ThrottlingException", 400), ("s3", "InternalError", 500), ("s3", "SlowDown", 503)],
)
def test_errors_are_well_formed_for_each_protocol(proxy: FaultProxy, service: str, code: str, status: int) -> None:
    client = aws(proxy, service)
    call = client.list_queues if service == "sqs" else client.list_buckets
    proxy.inject(Fault.error(code, status=status), service=service, times=1)
    with pytest.raises(ClientError) as refused:
        call()
    assert refused.value.response["Error"]["Code"] == code
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    call()  # times=1: the next call goes through


def test_latency_delays_only_the_chosen_operation(proxy: FaultProxy, table: str) -> None:
    db = aws(proxy, "dynamodb")
    put(db, table, "slow")
    proxy.inject(Fault.latency(1.5), service="dynamodb", operation="GetItem")
    started = time.monotonic()
    assert exists(db, table, "slow")
    assert time.monotonic() - started >= 1.5
    started = time.monotonic()
    put(db, table, "fast")
    assert time.monotonic() - started < 1.0


def test_match_and_times_pick_only_the_requests_asked_for(proxy: FaultProxy, table: str) -> None:
    db = aws(proxy, "dynamodb")
    rule = proxy.inject(Fault.error("InternalError", status=500), operation="PutItem", match="victim", times=2)
    put(db, table, "bystander")
    for _ in range(2):
        with pytest.raises(ClientError, match="InternalError"):
            put(db, table, "victim")
    put(db, table, "victim")  # its two faults are spent
    assert rule.hits == 2
    assert exists(db, table, "victim")
    assert exists(db, table, "bystander")


def test_probability_picks_about_that_share(proxy: FaultProxy, table: str) -> None:
    db = aws(proxy, "dynamodb")
    rule = proxy.inject(Fault.error("ThrottlingException"), operation="GetItem", probability=0.3)
    refused = 0
    for _ in range(100):
        try:
            exists(db, table, "any")
        except ClientError:
            refused += 1
    assert refused == rule.hits
    assert 10 <= refused <= 55


def test_reset_before_forwarding_drops_the_request(proxy: FaultProxy, table: str) -> None:
    db = aws(proxy, "dynamodb")
    proxy.inject(Fault.reset(), operation="PutItem", match="never-written", times=1)
    with pytest.raises(ConnectionClosedError):
        put(db, table, "never-written")
    assert not exists(db, table, "never-written")


def test_reset_after_forwarding_applies_the_request_but_loses_the_answer(proxy: FaultProxy, table: str) -> None:
    db = aws(proxy, "dynamodb")
    rule = proxy.inject(Fault.reset(after_forward=True), operation="PutItem", times=1)
    with pytest.raises(ConnectionClosedError):
        put(db, table, "written-unheard")
    assert rule.hits == 1
    assert exists(db, table, "written-unheard")


def test_a_reset_is_a_tcp_reset(proxy: FaultProxy) -> None:
    proxy.inject(Fault.reset(), service="dynamodb", times=1)
    port = int(proxy.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n"
            b"Authorization: AWS4-HMAC-SHA256 Credential=t/20260101/us-east-1/dynamodb/aws4_request\r\n\r\n{}"
        )
        with pytest.raises(ConnectionResetError):
            assert sock.recv(1024) == b"", "closed without a reset"


def test_chunked_and_large_s3_bodies_pass_through(proxy: FaultProxy) -> None:
    s3 = aws(proxy, "s3")
    bucket = f"tq-test-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    big = bytes(range(256)) * 12_000  # 3 MB: botocore sends Expect: 100-continue
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    assert s3.head_object(Bucket=bucket, Key="big")["ContentLength"] == len(big)
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == big

    # Given a chunked upload (what a stream of unknown length is sent as)
    host, port = proxy.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    scope = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"
    conn.request(
        "PUT", f"/{bucket}/chunked", body=iter([b"hello ", b"chunked ", b"world"]), headers={"Authorization": scope}
    )
    assert conn.getresponse().status == 200
    conn.close()
    assert s3.get_object(Bucket=bucket, Key="chunked")["Body"].read() == b"hello chunked world"
    assert proxy.calls[("s3", "PutObject")] >= 2


def test_many_threads_share_the_proxy(proxy: FaultProxy, table: str) -> None:
    db = aws(proxy, "dynamodb", Config(max_pool_connections=20, retries={"total_max_attempts": 1}))
    before = proxy.calls.get(("dynamodb", "PutItem"), 0)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: put(db, table, f"many-{n}"), range(320)))
    assert proxy.calls[("dynamodb", "PutItem")] - before == 320
    assert exists(db, table, "many-319")


def test_stop_ends_requests_in_flight_and_frees_the_port(emulator: str) -> None:
    proxy = FaultProxy(upstream=emulator).start()
    sqs = aws(proxy, "sqs")
    queue_url = sqs.create_queue(QueueName=f"tq-test-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    outcome: list[BaseException | None] = []

    def long_poll() -> None:
        try:
            sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=20)
            outcome.append(None)
        except BaseException as error:
            outcome.append(error)

    poller = threading.Thread(target=long_poll)
    poller.start()
    time.sleep(0.5)
    started = time.monotonic()
    proxy.stop()
    poller.join(timeout=10)
    assert time.monotonic() - started < 5
    assert outcome
    assert isinstance(outcome[0], (ConnectionClosedError, EndpointConnectionError))
    with pytest.raises(EndpointConnectionError):
        sqs.list_queues()
