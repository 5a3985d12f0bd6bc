"""IAM actions from API operations, and the least-privilege policy documents built from them.

Each service's task role allows exactly the actions its code needs (:func:`tq_infra.aws_calls.operations_of`), on
exactly tq's resources. Policies are JSON built with ``Output.json_dumps`` rather than ``get_policy_document``: the
document the mock tests read is then the very one AWS receives, with no invoke to mock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi

from tq_infra.aws_calls import Operation

#: Operations whose IAM actions are not ``<service>:<operation>``.
ACTIONS_OF: dict[Operation, tuple[str, ...]] = {
    # A transaction is authorised item by item, by the action of each item's kind.
    Operation("dynamodb", "TransactWriteItems"): (
        "dynamodb:ConditionCheckItem",
        "dynamodb:DeleteItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ),
    Operation("dynamodb", "TransactGetItems"): ("dynamodb:GetItem",),
    # SQS authorises a batch as its single-message action.
    Operation("sqs", "SendMessageBatch"): ("sqs:SendMessage",),
    Operation("sqs", "DeleteMessageBatch"): ("sqs:DeleteMessage",),
    Operation("sqs", "ChangeMessageVisibilityBatch"): ("sqs:ChangeMessageVisibility",),
    # S3 names actions after what they touch, not after the API. Without ListBucket, S3 answers a read of a
    # missing key with 403 AccessDenied instead of 404 NoSuchKey (which the run-log reader maps to "gone").
    Operation("s3", "GetObject"): ("s3:GetObject", "s3:ListBucket"),
    Operation("s3", "HeadObject"): ("s3:GetObject", "s3:ListBucket"),
    Operation("s3", "ListObjectsV2"): ("s3:ListBucket",),
    Operation("s3", "ListObjects"): ("s3:ListBucket",),
    Operation("s3", "HeadBucket"): ("s3:ListBucket",),
    Operation("s3", "CreateMultipartUpload"): ("s3:PutObject",),
    Operation("s3", "UploadPart"): ("s3:PutObject",),
    Operation("s3", "CompleteMultipartUpload"): ("s3:PutObject",),
    Operation("s3", "AbortMultipartUpload"): ("s3:AbortMultipartUpload",),
    Operation("s3", "DeleteObjects"): ("s3:DeleteObject",),
}
#: The only actions AWS cannot scope to a resource, so ``"Resource": "*"`` is allowed with them (and only them).
STAR_RESOURCE_ACTIONS = frozenset({"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"})
#: S3 actions on the bucket itself rather than on its objects.
BUCKET_ACTIONS = frozenset({"s3:ListBucket"})


def actions_of(operations: Iterable[Operation]) -> set[str]:
    """The IAM actions that authorise ``operations``."""
    return {a for op in operations for a in ACTIONS_OF.get(op, (f"{op.service}:{op.name}",))}


@dataclass(frozen=True)
class AppResources:
    """The ARNs a task role may act on."""

    table_arn: pulumi.Input[str]
    queue_arns: Sequence[pulumi.Input[str]]
    bucket_arn: pulumi.Input[str]


def task_policy(operations: Iterable[Operation], resources: AppResources) -> pulumi.Output[str]:
    """A policy allowing the operations' actions, each on tq's resources of its service only."""
    actions = actions_of(operations)
    by_service: dict[str, list[str]] = {}
    for action in sorted(actions):
        by_service.setdefault(action.split(":")[0], []).append(action)
    statements: list[dict[str, Any]] = []
    for service, service_actions in sorted(by_service.items()):
        if service == "dynamodb":
            arns: list[Any] = [resources.table_arn, pulumi.Output.concat(resources.table_arn, "/index/*")]
            statements.append(_allow(service_actions, arns))
        elif service == "sqs":
            statements.append(_allow(service_actions, list(resources.queue_arns)))
        elif service == "s3":
            objects = [a for a in service_actions if a not in BUCKET_ACTIONS]
            bucket = [a for a in service_actions if a in BUCKET_ACTIONS]
            if objects:
                statements.append(_allow(objects, [pulumi.Output.concat(resources.bucket_arn, "/*")]))
            if bucket:
                statements.append(_allow(bucket, [resources.bucket_arn]))
        else:
            # An action of another service would need its own resources here: say so instead of granting "*".
            raise ValueError(f"no resource scoping for {service} actions: {service_actions}")
    return document(statements)


def _allow(actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resources}


def document(statements: list[dict[str, Any]]) -> pulumi.Output[str]:
    """An IAM policy document (JSON) over statements whose values may be Outputs."""
    return pulumi.Output.json_dumps({"Version": "2012-10-17", "Statement": statements})


def execution_policy(
    repository_arns: list[pulumi.Input[str]],
    log_group_arns: list[pulumi.Input[str]],
    secret_statements: Sequence[dict[str, Any]] = (),
) -> pulumi.Output[str]:
    """What ECS itself needs to start a task: pull its image, write its logs (and read the secrets it puts into
    the container's environment: ``secret_statements``, on exactly those)."""
    return document(
        [
            _allow(["ecr:GetAuthorizationToken"], ["*"]),
            _allow(
                ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], repository_arns
            ),
            _allow(
                ["logs:CreateLogStream", "logs:PutLogEvents"],
                [pulumi.Output.concat(arn, ":log-stream:*") for arn in log_group_arns],
            ),
            *secret_statements,
        ]
    )


def assume_role_policy(service_principal: str) -> str:
    """Trust policy letting one AWS service principal (``ecs-tasks.amazonaws.com``) assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service_principal}, "Action": "sts:AssumeRole"}],
        }
    )


def policy_problems(name: str, policy: dict[str, Any]) -> list[str]:
    """What is wrong with a policy document: a wildcard in an action, ``"*"`` resources beyond what AWS requires."""
    problems = []
    statements = policy.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        actions = _as_list(statement.get("Action", []))
        resources = _as_list(statement.get("Resource", []))
        problems += [f"{name}: wildcard action {a!r}" for a in actions if "*" in a]
        if "*" in resources and not set(actions) <= STAR_RESOURCE_ACTIONS:
            problems.append(f"{name}: '*' resource for {sorted(set(actions) - STAR_RESOURCE_ACTIONS)}")
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"{name}: NotAction/NotResource")
    return problems


def _as_list(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else [value]
