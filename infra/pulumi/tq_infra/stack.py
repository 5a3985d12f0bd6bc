"""The whole stack from one :class:`StackConfig`: network, data, repositories, services; and its outputs."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from tq_infra import iam
from tq_infra.compute import Repositories, Services, queue_names
from tq_infra.config import StackConfig
from tq_infra.data import LogBucket, Queues, Table
from tq_infra.network import Network
from tqcore.settings import CoreSettings


def build(config: StackConfig) -> dict[str, pulumi.Output[str]]:
    """Create every resource; the stack outputs, by name."""
    region = aws.get_region().region
    # The services' own settings name the resources: what Pulumi creates is what they look for.
    settings = CoreSettings(prefix=config.prefix, region=region)
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
