"""The operations derived from the services' code: what they must contain, and the rules on synthetic code."""

from __future__ import annotations

import ast

import pytest

from tq_infra import aws_calls
from tq_infra.aws_calls import Operation, operations_of

pytestmark = pytest.mark.unit


def names(service: str) -> set[str]:
    return {f"{op.service}:{op.name}" for op in operations_of(service)}


def test_no_service_reaches_bootstrap_so_no_role_creates_resources() -> None:
    for service in aws_calls.SERVICES:
        assert aws_calls.BOOTSTRAP not in aws_calls.modules_of(service)
        assert not [
            n for n in names(service) if n.split(":")[1].startswith(("Create", "Delete" + "Table", "Put" + "Bucket"))
        ]


def test_the_paths_the_architecture_describes_are_found() -> None:
    # Submit: one transaction and one send; the executor receives, batches deletes and changes visibility through
    # dramatiq-sqs (its inherited requeue); the reaper reads the dead-letter queues.
    assert {"dynamodb:TransactWriteItems", "sqs:SendMessage", "s3:GetObject"} <= names("gateway")
    assert {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessageBatch",
        "sqs:ChangeMessageVisibilityBatch",
        "s3:PutObject",
    } <= names("executor")
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "dynamodb:Query"} <= names("reaper")
    assert "s3:PutObject" not in names("scheduler")
    # The scheduler's one-off backfill of the sweep keys scans the ``due`` index: no other role may scan.
    assert {"dynamodb:Scan", "dynamodb:UpdateItem", "dynamodb:PutItem"} <= names("scheduler")
    assert [service for service in aws_calls.SERVICES if "dynamodb:Scan" in names(service)] == ["scheduler"]


def test_string_operation_arguments_and_method_calls_both_count() -> None:
    tree = ast.parse("table.call('get_item', Key=k)\nclient.send_message_batch(Entries=[])\nx.unrelated('nothing')")
    assert set(aws_calls._calls_in(tree)) == {Operation("dynamodb", "GetItem"), Operation("sqs", "SendMessageBatch")}


def test_resource_actions_count_only_for_the_library_s_service_and_ambiguity_is_an_error() -> None:
    assert set(aws_calls._calls_in(ast.parse("queue.load()"), resources_of="sqs")) == {
        Operation("sqs", "GetQueueAttributes")
    }
    assert set(aws_calls._calls_in(ast.parse("queue.load()"))) == set()
    with pytest.raises(ValueError, match="delete"):
        set(aws_calls._calls_in(ast.parse("thing.delete()"), resources_of="sqs"))
