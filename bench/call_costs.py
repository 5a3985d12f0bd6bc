"""What single AWS calls cost on ministack, to tell tq's own cost from the emulator's (docs/PERFORMANCE.md,
"Where the emulator's time goes").

Three loops against a fresh ministack, each timed by CPU (the emulator's from ``/proc``, the client's from
``time.process_time``):

- ``sqs``: a batched send and a receive + batch delete per message, on a standard and on a FIFO queue (both with
  a redrive policy, as tq's), first on an empty queue, then after ``--prior`` sends (ministack rebuilds a FIFO
  queue's whole deduplication cache on every send);
- ``expression``: tq's own claim ``UpdateItem`` (captured from ``DynamoTaskStore``) against a bare
  ``SET doc, version`` with the same version condition, and the same claims 10 and 25 to a
  ``TransactWriteItems``, each on fresh copies of the same created task item;
- ``client``: the client CPU of one ``UpdateItem`` through boto3 (tq's client config) against the same request
  as a hand-signed SigV4 JSON POST over urllib3 (what a lean client for the hot calls would cost).

Usage: .venv/bin/python bench/call_costs.py [sqs expression client ...] [--n 400] [--prior 4000]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import hmac
import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import urllib3
from aws_cost import echo_task, process_cpu_s  # bench/ is the script's directory

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.bootstrap import bootstrap
from tqcore.settings import CoreSettings
from tqdev.emulator import start_emulator
from tqdev.stack import unique_prefix

REGION = "us-east-1"


def per_call_ms(pid: int, calls: int, run: Callable[[], Any]) -> float:
    """Emulator CPU ms per call of ``run`` (which makes ``calls`` calls)."""
    before = process_cpu_s(pid)
    run()
    return 1000 * (process_cpu_s(pid) - before) / calls


def sqs_costs(pid: int, endpoint: str, n: int, prior: int) -> None:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)

    def make(name: str, fifo: bool) -> str:
        attrs = {"FifoQueue": "true"} if fifo else {}
        suffix = ".fifo" if fifo else ""
        dlq = sqs.create_queue(QueueName=f"{name}-dlq{suffix}", Attributes=attrs)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
        return str(sqs.create_queue(QueueName=name + suffix, Attributes={**attrs, "RedrivePolicy": policy})["QueueUrl"])

    def send(url: str, fifo: bool, count: int) -> None:
        for _ in range(0, count, 10):
            entries = []
            for j in range(10):
                entry = {"Id": str(j), "MessageBody": "x" * 400}
                if fifo:
                    entry.update(MessageGroupId=uuid.uuid4().hex, MessageDeduplicationId=uuid.uuid4().hex)
                entries.append(entry)
            sqs.send_message_batch(QueueUrl=url, Entries=entries)

    def drain(url: str, count: int) -> None:
        got = 0
        while got < count:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                return
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)
            got += len(messages)

    n = max(10, n - n % 10)
    for fifo in (False, True):
        url = make(f"cost-{'fifo' if fifo else 'std'}", fifo)
        for before in (0, prior):
            if before:
                send(url, fifo, before)
                drain(url, before)
            sent = per_call_ms(pid, n, partial(send, url, fifo, n))
            received = per_call_ms(pid, n, partial(drain, url, n))
            kind = "FIFO    " if fifo else "standard"
            print(
                f"sqs {kind} after {before:>5} sends: send {sent:.3f} ms/message (batches of 10), "
                f"receive + batch delete {received:.3f} ms/message (backlog {n})"
            )


def expression_costs(pid: int, endpoint: str, n: int) -> None:
    settings = CoreSettings(endpoint_url=endpoint, prefix=unique_prefix())
    bootstrap(settings)
    client, raw = aws.client(settings, "dynamodb"), aws.client(settings, "dynamodb")
    captured: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "UpdateItem":
            captured.append(copy.deepcopy(params))

    client.meta.events.register("provide-client-params.dynamodb.UpdateItem", capture)
    store = DynamoTaskStore(client, settings)
    now = datetime.now(UTC)
    task = echo_task(1, now)
    store.create(task)
    task = task.committed()
    key = {"PK": {"S": f"TASK#{task.id}"}, "SK": {"S": "TASK"}}
    created = raw.get_item(TableName=settings.table_name, Key=key, ConsistentRead=True)["Item"]
    task.claim(1, "host:1", now, 30)
    store.commit(task)
    claim = captured[-1]
    values = claim["ExpressionAttributeValues"]
    condition_value = claim["ConditionExpression"].split("=")[1].split()[0]
    bare = {
        **claim,
        "UpdateExpression": "SET #doc = :d, #version = :v",
        "ConditionExpression": "#version = :e",
        "ExpressionAttributeNames": {"#doc": "doc", "#version": "version"},
        "ExpressionAttributeValues": {
            ":d": next(v for v in values.values() if v.get("S", "").startswith("{")),
            ":v": {"N": "2"},
            ":e": values[condition_value],
        },
    }
    print(f"tq's claim: {claim['UpdateExpression']} IF {claim['ConditionExpression']}")
    print(f"item: {len(json.dumps(created))} bytes of DynamoDB JSON")
    for round_ in range(2):
        for name, request in (("tq's claim", claim), ("bare SET doc, version", bare)):
            keys = []
            for i in range(n):
                item = {**created, "PK": {"S": f"TASK#copy-{round_}-{name[:3]}-{i}"}}
                raw.put_item(TableName=settings.table_name, Item=item)
                keys.append({"PK": item["PK"], "SK": item["SK"]})
            updates = [{**request, "Key": k} for k in keys]
            cost = per_call_ms(pid, n, partial(_each, raw.update_item, updates))
            print(f"expression {name}: {cost:.3f} ms emulator CPU per UpdateItem (round {round_ + 1})")
        for size in (10, 25):  # the same claims, several to a transaction (as the group commit sends them)
            keys = []
            for i in range(n):
                item = {**created, "PK": {"S": f"TASK#copy-{round_}-tx{size}-{i}"}}
                raw.put_item(TableName=settings.table_name, Item=item)
                keys.append({"PK": item["PK"], "SK": item["SK"]})
            batches = [
                {"TransactItems": [{"Update": {**claim, "Key": k}} for k in keys[start : start + size]]}
                for start in range(0, n, size)
            ]
            cost = per_call_ms(pid, n, partial(_each, raw.transact_write_items, batches))
            print(f"expression tq's claim, {size} per TransactWriteItems: {cost:.3f} ms emulator CPU per item")


def _each(call: Callable[..., Any], requests: list[dict[str, Any]]) -> None:
    for request in requests:
        call(**request)


class LeanDynamo:
    """The least a DynamoDB JSON call needs: a SigV4-signed POST over a pooled connection."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str) -> None:
        parts = urlsplit(endpoint)
        self._host = parts.netloc
        self._pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=4)
        self._access_key, self._secret_key = access_key, secret_key

    def call(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(request).encode()
        response = self._pool.urlopen("POST", "/", body=body, headers=self._signed(body, operation))
        answer: dict[str, Any] = json.loads(response.data)
        if response.status != 200:
            raise RuntimeError(f"{operation}: {response.status} {answer}")
        return answer

    def _signed(self, body: bytes, operation: str) -> dict[str, str]:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        day, target = stamp[:8], f"DynamoDB_20120810.{operation}"
        signed = "content-type;host;x-amz-date;x-amz-target"
        canonical = (
            f"POST\n/\n\ncontent-type:application/x-amz-json-1.0\nhost:{self._host}\nx-amz-date:{stamp}\n"
            f"x-amz-target:{target}\n\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        )
        scope = f"{day}/{REGION}/dynamodb/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        key = f"AWS4{self._secret_key}".encode()
        for part in (day, REGION, "dynamodb", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Date": stamp,
            "X-Amz-Target": target,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={self._access_key}/{scope}, SignedHeaders={signed}, "
            f"Signature={signature}",
        }


def client_costs(endpoint: str, n: int) -> None:
    settings = CoreSettings(endpoint_url=endpoint, prefix=unique_prefix())
    client = aws.client(settings, "dynamodb")
    table = f"{settings.prefix}-call-costs"
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "PK", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    lean = LeanDynamo(endpoint, os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])

    def request(i: int) -> dict[str, Any]:
        return {
            "TableName": table,
            "Key": {"PK": {"S": f"k{i % 200}"}},
            "UpdateExpression": "SET #d = :d, #v = :v",
            "ExpressionAttributeNames": {"#d": "doc", "#v": "version"},
            "ExpressionAttributeValues": {":d": {"S": "x" * 1200}, ":v": {"N": str(i)}},
        }

    ways: dict[str, Callable[[int], Any]] = {
        "boto3 (tq's client)": lambda i: client.update_item(**request(i)),
        "signed POST (urllib3)": lambda i: lean.call("UpdateItem", request(i)),
    }
    for _ in range(2):
        for name, call in ways.items():
            for i in range(50):
                call(i)
            cpu, wall = time.process_time(), time.monotonic()
            for i in range(n):
                call(i)
            print(
                f"client {name}: {1000 * (time.process_time() - cpu) / n:.3f} ms client CPU per UpdateItem, "
                f"{1000 * (time.monotonic() - wall) / n:.3f} ms wall"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("loops", nargs="*", default=["sqs", "expression", "client"])
    parser.add_argument("--n", type=int, default=400, help="calls (messages) per measurement")
    parser.add_argument("--prior", type=int, default=4000, help="sends before the second SQS measurement")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    with tempfile.TemporaryDirectory() as tmp:
        proc, endpoint = start_emulator("ministack", Path(tmp))
        try:
            for loop in args.loops:
                if loop == "sqs":
                    sqs_costs(proc.pid, endpoint, args.n, args.prior)
                elif loop == "expression":
                    expression_costs(proc.pid, endpoint, args.n)
                elif loop == "client":
                    client_costs(endpoint, args.n * 4)
                else:
                    parser.error(f"unknown loop {loop!r} (sqs, expression, client)")
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
