"""The whole stack from one :class:`StackConfig`: network, data, repositories, services; and its outputs."""

from __future__ import annotations

import os

import pulumi
import pulumi_aws as aws

from tq_infra import iam
from tq_infra.compute import Repositories, Services, queue_names
from tq_infra.config import StackConfig
from tq_infra.data import LogBucket, Queues, Table
from tq_infra.network import Network
from tqcore.settings import CoreSettings


def service_settings(config: StackConfig, region: str) -> CoreSettings:
    """The services' settings as their tasks will read them: ``tq:env`` plus the prefix and region, and nothing
    from the environment of whoever runs ``pulumi up``. They name the resources and set what the queues and the
    bucket depend on (the lease as the visibility timeout, receives before the DLQ, the run-log expiry)."""
    env = {**config.env, "TQ_PREFIX": config.prefix, "TQ_REGION": region}
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith(("TQ_", "AWS_"))]:
            del os.environ[key]
        os.environ.update(env)
        return CoreSettings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def build(config: StackConfig) -> dict[str, pulumi.Output[str]]:
    """Create every resource; the stack outputs, by name."""
    region = aws.get_region().region
    settings = service_settings(config, region)
    network = Network(config.prefix, config.vpc_cidr, config.az_count, region)
    table = Table(config.prefix, settings, config.replica_regions)
    queues = Queues(config.prefix, settings)
    bucket = LogBucket(config.prefix, settings)
    repositories = Repositories(config.prefix)
    resources = iam.AppResources(table.table.arn, queues.arns, bucket.bucket.arn)
    services = Services(config.prefix, config, settings, network, repositories, resources, list(queue_names(settings)))
    return {
        "url": pulumi.Output.concat("https://", services.alb.dns_name),
        "albDnsName": services.alb.dns_name,
        "clusterName": services.cluster.name,
        "tableName": table.table.name,
        "bucketName": bucket.bucket.bucket,
        **{f"{p.value}QueueUrl": q.url for p, q in queues.queues.items()},
        **{f"{s}Repository": r.repository_url for s, r in repositories.repositories.items()},
        **{f"{s}TaskRoleArn": r.arn for s, r in services.task_roles.items()},
        "vpcId": network.vpc.id,
    }
