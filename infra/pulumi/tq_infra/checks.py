"""Checks over the resources a program registered (as Pulumi's mocks see them: type, name, camelCase inputs).

Each returns the problems it finds, so a test can show both that the real stack has none and that a flawed
variant is caught.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tq_infra.iam import policy_problems
from tq_infra.network import HTTPS
from tq_infra.pools import DEFAULT_POOL, queue_names
from tqcore.adapters.dynamodb import keys
from tqcore.settings import CoreSettings

OPEN = {"0.0.0.0/0", "::/0"}


@dataclass(frozen=True)
class Registered:
    """One resource as registered: its type token, logical name, inputs and (mock) id."""

    typ: str
    name: str
    inputs: dict[str, Any]
    id: str


def of_type(resources: list[Registered], typ: str) -> list[Registered]:
    """The resources of one type token (``aws:sqs/queue:Queue``)."""
    return [r for r in resources if r.typ == typ]


def queue_problems(resources: list[Registered]) -> list[str]:
    """Every queue FIFO; every queue not a dead-letter queue redrives to a FIFO one within max receives."""
    queues = of_type(resources, "aws:sqs/queue:Queue")
    dlq_names = {q.inputs["name"] for q in queues if q.inputs["name"].endswith("-dlq.fifo")}
    problems = [f"{q.name}: not FIFO" for q in queues if q.inputs.get("fifoQueue") is not True]
    for queue in queues:
        if queue.inputs["name"] in dlq_names:
            continue
        redrive = json.loads(queue.inputs.get("redrivePolicy") or "{}")
        target = str(redrive.get("deadLetterTargetArn", ""))
        if not target.endswith("-dlq.fifo") or not int(redrive.get("maxReceiveCount", 0)) >= 1:
            problems.append(f"{queue.name}: no redrive policy to a FIFO dead-letter queue")
    return problems


def table_problems(resources: list[Registered]) -> list[str]:
    """The table: point-in-time recovery, TTL on tqcore's attribute, on demand, the GSIs tqcore queries."""
    problems = []
    for table in of_type(resources, "aws:dynamodb/table:Table"):
        i = table.inputs
        if not (i.get("pointInTimeRecovery") or {}).get("enabled"):
            problems.append(f"{table.name}: no point-in-time recovery")
        if i.get("ttl") != {"attributeName": keys.TTL_ATTRIBUTE, "enabled": True}:
            problems.append(f"{table.name}: TTL not on {keys.TTL_ATTRIBUTE}")
        if i.get("billingMode") != "PAY_PER_REQUEST":
            problems.append(f"{table.name}: not on demand")
        if {g["name"] for g in i.get("globalSecondaryIndexes", [])} != set(keys.INDEXES):
            problems.append(f"{table.name}: indexes differ from {sorted(keys.INDEXES)}")
    return problems


def bucket_problems(resources: list[Registered]) -> list[str]:
    """Every bucket encrypted, with every public access blocked and a lifecycle rule that expires objects."""
    problems = []
    by_bucket: dict[str, set[str]] = {}
    for kind, typ in (
        ("encryption", "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"),
        ("public-access-block", "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"),
        ("lifecycle", "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration"),
    ):
        for r in of_type(resources, typ):
            if kind == "public-access-block" and not all(
                r.inputs.get(k) is True
                for k in ("blockPublicAcls", "ignorePublicAcls", "blockPublicPolicy", "restrictPublicBuckets")
            ):
                continue
            if kind == "lifecycle" and not any(
                rule.get("status") == "Enabled" and (rule.get("expiration") or {}).get("days")
                for rule in r.inputs.get("rules", [])
            ):
                continue
            if kind == "encryption" and not r.inputs.get("rules"):
                continue
            by_bucket.setdefault(r.inputs["bucket"], set()).add(kind)
    for bucket in of_type(resources, "aws:s3/bucket:Bucket"):
        missing = {"encryption", "public-access-block", "lifecycle"} - by_bucket.get(bucket.id, set())
        problems += [f"{bucket.name}: no {kind} configuration" for kind in sorted(missing)]
    return problems


def iam_problems(resources: list[Registered]) -> list[str]:
    """No wildcard action; ``"*"`` resources only with the actions AWS cannot scope."""
    problems = []
    for policy in [*of_type(resources, "aws:iam/rolePolicy:RolePolicy"), *of_type(resources, "aws:iam/policy:Policy")]:
        problems += policy_problems(policy.name, json.loads(policy.inputs["policy"]))
    return problems


def security_group_problems(resources: list[Registered]) -> list[str]:
    """No rule open to the internet, but HTTPS into the load balancer's security group."""
    balancer_groups = {
        sg
        for lb in of_type(resources, "aws:lb/loadBalancer:LoadBalancer")
        for sg in lb.inputs.get("securityGroups", [])
    }
    problems = []
    for rule in [
        *of_type(resources, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"),
        *of_type(resources, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"),
    ]:
        if not OPEN & {rule.inputs.get("cidrIpv4"), rule.inputs.get("cidrIpv6")}:
            continue
        ingress = rule.typ.endswith("IngressRule")
        listener = rule.inputs.get("fromPort") == HTTPS and rule.inputs.get("toPort") == HTTPS
        if not (ingress and listener and rule.inputs["securityGroupId"] in balancer_groups):
            problems.append(f"{rule.name}: open to the internet")
    for group in of_type(resources, "aws:ec2/securityGroup:SecurityGroup"):
        for direction in ("ingress", "egress"):
            for inline in group.inputs.get(direction, []):
                if OPEN & {*inline.get("cidrBlocks", []), *inline.get("ipv6CidrBlocks", [])}:
                    problems.append(f"{group.name}: inline {direction} rule open to the internet")
    return problems


def pool_queue_problems(resources: list[Registered]) -> list[str]:
    """Each executor's role reaches only its own pool's queues (``TQ_POOL``, default ``default``): a pool that
    could read another's would take tasks it has no handler for."""
    policies = of_type(resources, "aws:iam/rolePolicy:RolePolicy")
    problems = []
    for definition in of_type(resources, "aws:ecs/taskDefinition:TaskDefinition"):
        for container in json.loads(definition.inputs["containerDefinitions"]):
            if container["name"] != "executor":
                continue
            env = {e["name"]: e["value"] for e in container.get("environment", [])}
            pool = env.get("TQ_POOL", DEFAULT_POOL)
            own = {n for pair in queue_names(CoreSettings(prefix=env["TQ_PREFIX"]), pool).values() for n in pair}
            # Under the mocks a role's ARN ends with its logical name, and a policy names the role by its id.
            role = str(definition.inputs["taskRoleArn"]).rsplit(":", 1)[-1]
            for policy in [p for p in policies if p.inputs.get("role") == f"{role}-id"]:
                for statement in json.loads(policy.inputs["policy"]).get("Statement", []):
                    if not any(str(a).startswith("sqs:") for a in _listed(statement.get("Action", []))):
                        continue
                    others = sorted(
                        r for r in _listed(statement.get("Resource", [])) if r.rsplit(":", 1)[-1] not in own
                    )
                    problems += [f"{policy.name}: pool {pool!r} reaches {r}" for r in others]
    return problems


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]
