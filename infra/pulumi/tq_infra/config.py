"""The stack's settings, read once from Pulumi config (``tq:*`` keys) into one typed value."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from tq_infra.aws_calls import SERVICES
from tq_infra.pools import DEFAULT_POOL, Pool, parse_pools


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
    #: ``tq:handlerModules``: the modules the executors import to register their handlers (``TQ_HANDLER_MODULES``).
    handler_modules: list[str] = field(default_factory=list)
    #: ``tq:scripts``: the ``script`` type's allow-list (``TQ_SCRIPT_ALLOW``); set, the executors run as root so
    #: that each worker slot can run its scripts as an unprivileged uid of its own.
    scripts: dict[str, Any] | None = None
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
    #: ``tq:pools``: executor pools beside the default one (which the keys above describe), by name; an entry
    #: ``default`` refines the default pool (tq_infra/pools.py, docs/DEPLOY.md "Executor pools").
    pools: dict[str, Any] | None = None

    @property
    def executor_pools(self) -> dict[str, Pool]:
        """Every pool, the default one first, checked (``ValueError`` names what is wrong)."""
        default = Pool(
            DEFAULT_POOL,
            handler_modules=tuple(self.handler_modules),
            scripts=self.scripts,
            image_tag=self.image_tags.get("executor"),
            min_count=self.executor_min,
            max_count=self.executor_max,
            backlog_per_task=self.executor_backlog_per_task,
        )
        return parse_pools(self.pools, default)

    @classmethod
    def load(cls) -> StackConfig:
        """From the current stack's config (``Pulumi.<stack>.yaml``)."""
        config = pulumi.Config("tq")
        return cls(
            prefix=config.get("prefix") or "tq",
            image_tags={service: config.require(f"{service}ImageTag") for service in SERVICES},
            certificate_arn=config.require("certificateArn"),
            vpc_cidr=config.get("vpcCidr") or cls.vpc_cidr,
            az_count=_int(config, "azCount", cls.az_count),
            replica_regions=config.get_object("replicaRegions") or [],
            log_retention_days=_int(config, "logRetentionDays", cls.log_retention_days),
            deploy_services=config.get_bool("deployServices") is not False,
            env=config.get_object("env") or {},
            handler_modules=config.get_object("handlerModules") or [],
            scripts=config.get_object("scripts"),
            gateway_min=_int(config, "gatewayMin", cls.gateway_min),
            gateway_max=_int(config, "gatewayMax", cls.gateway_max),
            gateway_requests_per_target=_int(config, "gatewayRequestsPerTarget", cls.gateway_requests_per_target),
            executor_min=_int(config, "executorMin", cls.executor_min),
            executor_max=_int(config, "executorMax", cls.executor_max),
            executor_backlog_per_task=_int(config, "executorBacklogPerTask", cls.executor_backlog_per_task),
            scheduler_count=_int(config, "schedulerCount", cls.scheduler_count),
            reaper_count=_int(config, "reaperCount", cls.reaper_count),
            pools=config.get_object("pools"),
        )


def executor_environment(config: StackConfig) -> dict[str, str]:
    """What tells the default pool's executors which task types to run; refused if it names none."""
    return config.executor_pools[DEFAULT_POOL].environment()


def _int(config: pulumi.Config, key: str, default: int) -> int:
    """``tq:<key>`` as an int, ``default`` only when unset (0 is a value: e.g. ``executorMin: 0``)."""
    value = config.get_int(key)
    return default if value is None else value
