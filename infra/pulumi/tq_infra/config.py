"""The stack's settings, read once from Pulumi config (``tq:*`` keys) into one typed value."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from tq_infra.aws_calls import SERVICES


@dataclass(frozen=True)
class StackConfig:
    """Everything the builders need that differs between stacks (dev, prod)."""

    #: Every resource name starts with it; the services' ``TQ_PREFIX`` (so ``tqcore.settings`` names match).
    prefix: str
    #: ``tq:<service>ImageTag``: the tag of each service's image in its ECR repository.
    image_tags: dict[str, str]
    #: The ALB's HTTPS listener certificate (ACM).
    certificate_arn: str
    vpc_cidr: str = "10.40.0.0/16"
    az_count: int = 2
    #: Other regions the table is replicated to (a global table); empty: one region.
    replica_regions: list[str] = field(default_factory=list)
    log_retention_days: int = 30
    #: False on the very first ``pulumi up``: repositories, network and data only, before any image is pushed.
    deploy_services: bool = True
    #: ``TQ_*`` settings for every service (e.g. ``TQ_LEASE_S``); resource names come from ``prefix``.
    env: dict[str, str] = field(default_factory=dict)
    gateway_min: int = 2
    gateway_max: int = 6
    #: Requests per gateway task per minute the gateway's autoscaling holds (ALBRequestCountPerTarget).
    gateway_requests_per_target: int = 3000
    executor_min: int = 2
    executor_max: int = 20
    #: Visible messages per running executor task the executor's autoscaling holds.
    executor_backlog_per_task: int = 20
    scheduler_count: int = 2
    reaper_count: int = 1

    @classmethod
    def load(cls) -> StackConfig:
        """From the current stack's config (``Pulumi.<stack>.yaml``)."""
        config = pulumi.Config("tq")
        return cls(
            prefix=config.get("prefix") or "tq",
            image_tags={service: config.require(f"{service}ImageTag") for service in SERVICES},
            certificate_arn=config.require("certificateArn"),
            vpc_cidr=config.get("vpcCidr") or cls.vpc_cidr,
            az_count=config.get_int("azCount") or cls.az_count,
            replica_regions=config.get_object("replicaRegions") or [],
            log_retention_days=config.get_int("logRetentionDays") or cls.log_retention_days,
            deploy_services=config.get_bool("deployServices") is not False,
            env=config.get_object("env") or {},
            gateway_min=config.get_int("gatewayMin") or cls.gateway_min,
            gateway_max=config.get_int("gatewayMax") or cls.gateway_max,
            gateway_requests_per_target=config.get_int("gatewayRequestsPerTarget") or cls.gateway_requests_per_target,
            executor_min=config.get_int("executorMin") or cls.executor_min,
            executor_max=config.get_int("executorMax") or cls.executor_max,
            executor_backlog_per_task=config.get_int("executorBacklogPerTask") or cls.executor_backlog_per_task,
            scheduler_count=config.get_int("schedulerCount") or cls.scheduler_count,
            reaper_count=config.get_int("reaperCount") or cls.reaper_count,
        )
