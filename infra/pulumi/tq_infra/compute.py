"""The services tier: ECR repositories, the ECS cluster, the Fargate services (gateway, scheduler, reaper and
one executor service per pool), the ALB and autoscaling."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from tq_infra import iam
from tq_infra.aws_calls import SERVICES, operations_of
from tq_infra.config import StackConfig
from tq_infra.network import HTTPS, Network
from tq_infra.pools import DEFAULT_POOL, Pool
from tq_infra.scaling import executor_backlog_policy, scalable, target_tracking
from tqcore.settings import CoreSettings

#: The gateway's port in its container (``TQ_GATEWAY_PORT``) and the metrics port of the others.
GATEWAY_PORT = 8080
METRICS_PORT = 9100
#: CPU units and MiB per task.
SIZES = {"gateway": (512, 1024), "executor": (1024, 2048), "scheduler": (256, 512), "reaper": (256, 512)}
#: The gateway's environment variable ECS fills from the console's key (one for every replica).
CONSOLE_SECRET_ENV = "TQ_CONSOLE_SECRET"  # noqa: S105 - a variable name, not a secret
#: Services whose task count autoscaling sets.
AUTOSCALED = frozenset({"gateway", "executor"})


class Repositories(pulumi.ComponentResource):
    """One ECR repository per service, and one per executor pool but the default (whose image is the executor's)
    (images ``<repository url>:<tag>``; tags never move)."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None, *, pools: Iterable[Pool] = ()) -> None:
        super().__init__("tq:compute:Repositories", name, None, opts)
        self.repositories = {
            service: aws.ecr.Repository(
                f"{name}-{service}",
                name=f"{name}-{service}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                opts=pulumi.ResourceOptions(parent=self),
            )
            for service in [*SERVICES, *(p.service for p in pools if not p.default)]
        }
        self.register_outputs({s: r.repository_url for s, r in self.repositories.items()})


class Services(pulumi.ComponentResource):
    """The cluster, one task role per service and pool (from the calls its code makes), the services, ALB,
    autoscaling.

    ``resources`` are what the gateway, scheduler and reaper act on (every pool's queues); ``pool_queues`` the
    queue ARNs of each pool, the only queues its executors' role may touch.
    """

    def __init__(
        self,
        name: str,
        config: StackConfig,
        settings: CoreSettings,
        network: Network,
        repositories: Repositories,
        resources: iam.AppResources,
        pool_queues: dict[str, tuple[list[pulumi.Output[str]], list[str]]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tq:compute:Services", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        pools = config.executor_pools
        #: Each deployed unit (a service, or an executor pool's ``executor[-<pool>]``) -> its pool, if one.
        #: (The default pool in the executor's place: a stack from before pools keeps its documents as they were.)
        units: dict[str, Pool | None] = {s: pools[DEFAULT_POOL] if s == "executor" else None for s in SERVICES} | {
            pool.service: pool for pool in pools.values()
        }
        self.cluster = aws.ecs.Cluster(name, settings=[{"name": "containerInsights", "value": "enabled"}], opts=child)
        self.log_groups = {
            unit: aws.cloudwatch.LogGroup(
                f"{name}-{unit}", name=f"/tq/{name}/{unit}", retention_in_days=config.log_retention_days, opts=child
            )
            for unit in units
        }
        execution_role = self._execution_role(
            f"{name}-execution", list(repositories.repositories.values()), list(self.log_groups.values()), [], child
        )
        self.task_roles: dict[str, aws.iam.Role] = {}
        execution_roles: dict[str, aws.iam.Role] = {}
        if CONSOLE_SECRET_ENV in config.env:
            raise ValueError(
                f"tq:env sets {CONSOLE_SECRET_ENV}: the stack makes the console's key itself (a SecureString the"
                " gateways read at start); a value in tq:env would sit in the task definition in clear"
            )
        # The console's key: the same on every gateway replica (a session made by one is read by all), generated
        # once when the stack is created and kept by every later run (ignore_changes), so deploys keep sessions.
        self.console_secret = aws.ssm.Parameter(
            f"{name}-console-secret",
            name=f"/tq/{name}/console-secret",
            type="SecureString",
            value=pulumi.Output.secret(secrets.token_urlsafe(48)),
            description="tq console: the key of its session cookies and CSRF tokens (TQ_CONSOLE_SECRET)",
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["value"]),
        )
        # The gateway's execution role reads exactly that parameter, into its environment.
        execution_roles["gateway"] = self._execution_role(
            f"{name}-gateway-execution",
            [repositories.repositories["gateway"]],
            [self.log_groups["gateway"]],
            [{"Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": [self.console_secret.arn]}],
            child,
        )
        for unit, pool in units.items():
            if pool is None:
                self.task_roles[unit] = self._task_role(f"{name}-{unit}", unit, resources, child)
                continue
            arns = pool_queues[pool.name][0]
            scoped = iam.AppResources(resources.table_arn, arns, resources.bucket_arn)
            self.task_roles[unit] = self._pool_task_role(f"{name}-{unit}", pool, scoped, child)
            # A pool with secrets has an execution role of its own, allowed to read exactly those.
            execution_roles[unit] = (
                self._execution_role(
                    f"{name}-{unit}-execution",
                    [repositories.repositories[unit if not pool.default else "executor"]],
                    [self.log_groups[unit]],
                    pool.secret_statements(),
                    child,
                )
                if pool.secrets
                else execution_role
            )
        self.alb, self.target_group, listener, alb_sg = self._load_balancer(name, config, network, child)
        gateway_sg = self._gateway_security_group(name, network, alb_sg, child)
        self._metrics_ingress(name, network, child)
        egress_groups = {
            pool.service: self._egress_security_group(f"{name}-{pool.service}", network, pool, child)
            for pool in pools.values()
            if pool.egress.cidrs
        }
        if not config.deploy_services:
            self.register_outputs({})
            return
        self.services: dict[str, aws.ecs.Service] = {}
        for unit, pool in units.items():
            kind = "executor" if pool else unit
            cpu, memory = (pool.cpu, pool.memory) if pool else SIZES[unit]
            definition = aws.ecs.TaskDefinition(
                f"{name}-{unit}",
                family=f"{name}-{unit}",
                cpu=str(cpu),
                memory=str(memory),
                network_mode="awsvpc",
                requires_compatibilities=["FARGATE"],
                runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
                execution_role_arn=execution_roles.get(unit, execution_role).arn,
                task_role_arn=self.task_roles[unit].arn,
                container_definitions=pulumi.Output.json_dumps(
                    [self._container(unit, pool, config, settings, repositories, self.log_groups[unit].name)]
                ),
                opts=child,
            )
            gateway = unit == "gateway"
            groups = [network.tasks_sg.id, *([gateway_sg.id] if gateway else [])]
            self.services[unit] = aws.ecs.Service(
                f"{name}-{unit}",
                cluster=self.cluster.arn,
                task_definition=definition.arn,
                launch_type="FARGATE",
                desired_count=pool.min_count if pool else _initial_count(unit, config),
                network_configuration={
                    "subnets": [s.id for s in network.private_subnets],
                    "security_groups": [*groups, *([egress_groups[unit].id] if unit in egress_groups else [])],
                    "assign_public_ip": False,
                },
                load_balancers=(
                    [
                        {
                            "target_group_arn": self.target_group.arn,
                            "container_name": kind,
                            "container_port": GATEWAY_PORT,
                        }
                    ]
                    if gateway
                    else []
                ),
                # Rolling: new tasks healthy before old ones go; a failing deployment rolls itself back.
                deployment_minimum_healthy_percent=100,
                deployment_maximum_percent=200,
                deployment_circuit_breaker={"enable": True, "rollback": True},
                # The gateway's first health checks wait for its workers to start.
                health_check_grace_period_seconds=30 if gateway else None,
                opts=pulumi.ResourceOptions(
                    parent=self,
                    # Autoscaling owns the gateway's and executors' counts after creation (the scheduler's and
                    # reaper's follow tq:schedulerCount and tq:reaperCount).
                    ignore_changes=["desiredCount"] if kind in AUTOSCALED else None,
                    # ECS refuses a service whose target group no load balancer uses yet.
                    depends_on=[listener] if gateway else None,
                ),
            )
        self._autoscaling(name, config, child)
        for pool in pools.values():
            executor_backlog_policy(
                f"{name}-{pool.service}",
                self.cluster,
                self.services[pool.service],
                pool,
                pool_queues[pool.name][1],
                child,
            )
        self.register_outputs({})

    def _task_role(
        self, name: str, service: str, resources: iam.AppResources, child: pulumi.ResourceOptions
    ) -> aws.iam.Role:
        role = aws.iam.Role(name, assume_role_policy=iam.assume_role_policy("ecs-tasks.amazonaws.com"), opts=child)
        aws.iam.RolePolicy(name, role=role.id, policy=iam.task_policy(operations_of(service), resources), opts=child)
        return role

    def _pool_task_role(
        self, name: str, pool: Pool, resources: iam.AppResources, child: pulumi.ResourceOptions
    ) -> aws.iam.Role:
        """The executor's calls on the pool's own queues, plus what the pool's handlers were given (apart, so the
        first policy stays exactly the code's calls)."""
        role = self._task_role(name, "executor", resources, child)
        if pool.iam_statements:
            aws.iam.RolePolicy(
                f"{name}-handlers",
                role=role.id,
                policy=iam.document([dict(s) for s in pool.iam_statements]),
                opts=child,
            )
        for n, arn in enumerate(pool.managed_policy_arns):
            aws.iam.RolePolicyAttachment(f"{name}-managed-{n}", role=role.name, policy_arn=arn, opts=child)
        return role

    def _execution_role(
        self,
        name: str,
        repositories: Sequence[aws.ecr.Repository],
        log_groups: Sequence[aws.cloudwatch.LogGroup],
        secret_statements: list[dict[str, Any]],
        child: pulumi.ResourceOptions,
    ) -> aws.iam.Role:
        """What ECS itself uses to start a task: pull the image, write the logs, read the task's secrets."""
        role = aws.iam.Role(name, assume_role_policy=iam.assume_role_policy("ecs-tasks.amazonaws.com"), opts=child)
        aws.iam.RolePolicy(
            name,
            role=role.id,
            policy=iam.execution_policy([r.arn for r in repositories], [g.arn for g in log_groups], secret_statements),
            opts=child,
        )
        return role

    def _egress_security_group(
        self, name: str, network: Network, pool: Pool, child: pulumi.ResourceOptions
    ) -> aws.ec2.SecurityGroup:
        """The networks a pool's handlers may reach through the NAT gateway, on the pool's ports only."""
        sg = aws.ec2.SecurityGroup(
            f"{name}-egress", vpc_id=network.vpc.id, description=f"tq pool {pool.name} egress", opts=child
        )
        for n, cidr in enumerate(pool.egress.cidrs):
            for port in pool.egress.ports:
                aws.vpc.SecurityGroupEgressRule(
                    f"{name}-egress-{n}-{port}",
                    security_group_id=sg.id,
                    ip_protocol="tcp",
                    from_port=port,
                    to_port=port,
                    **({"cidr_ipv6": cidr} if ":" in cidr else {"cidr_ipv4": cidr}),
                    opts=child,
                )
        return sg

    def _load_balancer(
        self, name: str, config: StackConfig, network: Network, child: pulumi.ResourceOptions
    ) -> tuple[aws.lb.LoadBalancer, aws.lb.TargetGroup, aws.lb.Listener, aws.ec2.SecurityGroup]:
        sg = aws.ec2.SecurityGroup(f"{name}-alb", vpc_id=network.vpc.id, description="tq ALB", opts=child)
        # The one rule open to the internet: HTTPS to the listener (IPv4: the VPC has no IPv6 block).
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-alb-https",
            security_group_id=sg.id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            cidr_ipv4="0.0.0.0/0",
            opts=child,
        )
        alb = aws.lb.LoadBalancer(
            name,
            load_balancer_type="application",
            subnets=[s.id for s in network.public_subnets],
            security_groups=[sg.id],
            drop_invalid_header_fields=True,
            # The ALB appends the address it saw to X-Forwarded-For (the default, said here because the gateway's
            # TQ_TRUSTED_PROXY_HOPS=1 relies on it: the header's last entry is the client's).
            xff_header_processing_mode="append",
            opts=child,
        )
        target_group = aws.lb.TargetGroup(
            f"{name}-gateway",
            port=GATEWAY_PORT,
            protocol="HTTP",
            target_type="ip",
            vpc_id=network.vpc.id,
            deregistration_delay=15,
            # /healthz: the process answers. Not /readyz, which also needs the other services alive: a reaper
            # down would make every gateway unhealthy, and ECS would replace them all.
            health_check={"path": "/healthz", "matcher": "200", "interval": 10, "healthy_threshold": 2},
            opts=child,
        )
        listener = aws.lb.Listener(
            f"{name}-https",
            load_balancer_arn=alb.arn,
            port=HTTPS,
            protocol="HTTPS",
            ssl_policy="ELBSecurityPolicy-TLS13-1-2-2021-06",
            certificate_arn=config.certificate_arn,
            default_actions=[{"type": "forward", "target_group_arn": target_group.arn}],
            opts=child,
        )
        return alb, target_group, listener, sg

    def _gateway_security_group(
        self, name: str, network: Network, alb_sg: aws.ec2.SecurityGroup, child: pulumi.ResourceOptions
    ) -> aws.ec2.SecurityGroup:
        sg = aws.ec2.SecurityGroup(f"{name}-gateway", vpc_id=network.vpc.id, description="tq gateway", opts=child)
        port = {"ip_protocol": "tcp", "from_port": GATEWAY_PORT, "to_port": GATEWAY_PORT}
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-gateway-from-alb",
            security_group_id=sg.id,
            referenced_security_group_id=alb_sg.id,
            **port,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-to-gateway",
            security_group_id=alb_sg.id,
            referenced_security_group_id=sg.id,
            **port,
            opts=child,
        )
        return sg

    def _metrics_ingress(self, name: str, network: Network, child: pulumi.ResourceOptions) -> None:
        """Prometheus, wherever it runs in the VPC, scrapes every task's /metrics."""
        for rule, (low, high) in (("metrics", (METRICS_PORT, METRICS_PORT)), ("gateway-metrics", (GATEWAY_PORT,) * 2)):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-{rule}-from-vpc",
                security_group_id=network.tasks_sg.id,
                cidr_ipv4=network.cidr,
                ip_protocol="tcp",
                from_port=low,
                to_port=high,
                opts=child,
            )

    def _container(
        self,
        unit: str,
        pool: Pool | None,
        config: StackConfig,
        settings: CoreSettings,
        repositories: Repositories,
        log_group: pulumi.Output[str],
    ) -> dict[str, Any]:
        service = "executor" if pool else unit
        environment = {
            **config.env,
            "TQ_PREFIX": settings.prefix,
            "TQ_REGION": settings.region,
            "TQ_METRICS_HOST": "0.0.0.0",  # noqa: S104 - inside the task's own network namespace
            "TQ_METRICS_PORT": str(METRICS_PORT),
        }
        ports = [METRICS_PORT]
        health = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        if service == "gateway":
            # Behind the ALB, one proxy (more if ``tq:env`` says so, e.g. a CDN in front): the client's address.
            environment = {"TQ_TRUSTED_PROXY_HOPS": "1"} | environment
            environment |= {"TQ_GATEWAY_HOST": "0.0.0.0", "TQ_GATEWAY_PORT": str(GATEWAY_PORT)}  # noqa: S104
            ports = [GATEWAY_PORT]
            health = f"http://127.0.0.1:{GATEWAY_PORT}/healthz"
        extra: dict[str, Any] = {}
        if service == "gateway":
            extra["secrets"] = [{"name": CONSOLE_SECRET_ENV, "valueFrom": self.console_secret.arn}]
        image: pulumi.Output[str] = pulumi.Output.concat(
            repositories.repositories[service].repository_url, ":", config.image_tags[service]
        )
        if pool is not None:
            environment |= pool.environment()
            if pool.scripts is not None:  # root only to give each slot's scripts an unprivileged uid of their own
                extra["user"] = "0"
            if pool.secrets:
                extra["secrets"] = [{"name": k, "valueFrom": v} for k, v in sorted(pool.secrets.items())]
            if not pool.image_tag:
                raise ValueError(f"tq:pools.{pool.name}: set imageTag (the image pushed to its repository)")
            # The default pool's image is the executor's (its tag: tq:executorImageTag unless tq:pools.default
            # says otherwise); another pool's is in its own repository.
            repository = repositories.repositories["executor" if pool.default else unit]
            image = pulumi.Output.concat(repository.repository_url, ":", pool.image_tag)
        return {
            **extra,
            "name": service,
            "image": image,
            "essential": True,
            "environment": [{"name": k, "value": v} for k, v in sorted(environment.items())],
            "portMappings": [{"containerPort": p, "protocol": "tcp"} for p in ports],
            # ECS ignores the image's HEALTHCHECK: the same probe here, so a hung process is replaced.
            "healthCheck": {
                "command": [
                    "CMD",
                    "python",
                    "-c",
                    f"import urllib.request; urllib.request.urlopen('{health}', timeout=4)",
                ],
                "interval": 15,
                "timeout": 5,
                "retries": 3,
                "startPeriod": 30,
            },
            # Executors hand attempts over within TQ_SHUTDOWN_GRACE_S (25 s) of SIGTERM.
            "stopTimeout": 40 if service == "executor" else 20,
            "readonlyRootFilesystem": False,
            "logConfiguration": {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group,
                    "awslogs-region": settings.region,
                    "awslogs-stream-prefix": service,
                },
            },
        }

    def _autoscaling(self, name: str, config: StackConfig, child: pulumi.ResourceOptions) -> None:
        """The gateway's task count follows the ALB's requests per target (each pool's: tq_infra.scaling)."""
        target = scalable(
            f"{name}-gateway", self.cluster, self.services["gateway"], config.gateway_min, config.gateway_max, child
        )
        target_tracking(
            f"{name}-gateway-requests",
            target,
            {
                "target_value": config.gateway_requests_per_target,
                "predefined_metric_specification": {
                    "predefined_metric_type": "ALBRequestCountPerTarget",
                    "resource_label": pulumi.Output.concat(self.alb.arn_suffix, "/", self.target_group.arn_suffix),
                },
            },
            child,
        )


def _initial_count(service: str, config: StackConfig) -> int:
    return {"gateway": config.gateway_min, "scheduler": config.scheduler_count, "reaper": config.reaper_count}[service]
