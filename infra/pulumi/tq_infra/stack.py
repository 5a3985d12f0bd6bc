"""The whole stack from one :class:`StackConfig`: network, data, repositories, services; and its outputs."""

from __future__ import annotations

import os

import pulumi
import pulumi_aws as aws

from tq_infra import iam
from tq_infra.compute import Repositories, Services
from tq_infra.config import StackConfig
from tq_infra.data import LogBucket, Queues, Table
from tq_infra.network import Network
from tq_infra.pools import DEFAULT_POOL, queue_names
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
    pools = config.executor_pools  # checked before anything is built
    region = aws.get_region().region
    settings = service_settings(config, region)
    network = Network(
        config.prefix,
        config.vpc_cidr,
        config.az_count,
        region,
        nat=any(p.egress.nat for p in pools.values()),
        endpoints={e for p in pools.values() for e in [*p.egress.endpoints, *p.secret_endpoints()]},
    )
    table = Table(config.prefix, settings, config.replica_regions)
    # The default pool's queues keep the component's name from before pools.
    queues = {
        pool: Queues(config.prefix if pool == DEFAULT_POOL else f"{config.prefix}-{pool}", settings, pool=pool)
        for pool in pools
    }
    bucket = LogBucket(config.prefix, settings)
    repositories = Repositories(config.prefix, pools=pools.values())
    every_queue = [arn for q in queues.values() for arn in q.arns]
    resources = iam.AppResources(table.table.arn, every_queue, bucket.bucket.arn)
    pool_queues = {
        pool: (queues[pool].arns, [names[0] for names in queue_names(settings, pool).values()]) for pool in pools
    }
    services = Services(config.prefix, config, settings, network, repositories, resources, pool_queues)
    return {
        "url": pulumi.Output.concat("https://", services.alb.dns_name),
        "albDnsName": services.alb.dns_name,
        "clusterName": services.cluster.name,
        "tableName": table.table.name,
        "bucketName": bucket.bucket.bucket,
        **{f"{p.value}QueueUrl": q.url for p, q in queues[DEFAULT_POOL].queues.items()},
        **{
            f"{pool}-{p.value}QueueUrl": q.url
            for pool in pools
            if pool != DEFAULT_POOL
            for p, q in queues[pool].queues.items()
        },
        **{f"{s}Repository": r.repository_url for s, r in repositories.repositories.items()},
        **{f"{s}TaskRoleArn": r.arn for s, r in services.task_roles.items()},
        "vpcId": network.vpc.id,
    }
