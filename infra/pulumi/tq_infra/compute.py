"""The services tier: ECR repositories, the ECS cluster, the four Fargate services, the ALB and autoscaling."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from tq_infra import iam
from tq_infra.aws_calls import SERVICES, operations_of
from tq_infra.config import StackConfig, executor_environment
from tq_infra.network import HTTPS, Network
from tqcore.domain.model import Priority
from tqcore.settings import CoreSettings

#: The gateway's port in its container (``TQ_GATEWAY_PORT``) and the metrics port of the others.
GATEWAY_PORT = 8080
METRICS_PORT = 9100
#: CPU units and MiB per task.
SIZES = {"gateway": (512, 1024), "executor": (1024, 2048), "scheduler": (256, 512), "reaper": (256, 512)}
#: Services whose task count autoscaling sets.
AUTOSCALED = frozenset({"gateway", "executor"})


class Repositories(pulumi.ComponentResource):
    """One ECR repository per service (images ``<repository url>:<tag>``; tags never move)."""

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tq:compute:Repositories", name, None, opts)
        self.repositories = {
            service: aws.ecr.Repository(
                f"{name}-{service}",
                name=f"{name}-{service}",
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                opts=pulumi.ResourceOptions(parent=self),
            )
            for service in SERVICES
        }
        self.register_outputs({s: r.repository_url for s, r in self.repositories.items()})


class Services(pulumi.ComponentResource):
    """The cluster, one task role per service (from the calls its code makes), the services, ALB, autoscaling."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        settings: CoreSettings,
        network: Network,
        repositories: Repositories,
        resources: iam.AppResources,
        queue_names: list[pulumi.Input[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("tq:compute:Services", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.cluster = aws.ecs.Cluster(name, settings=[{"name": "containerInsights", "value": "enabled"}], opts=child)
        self.log_groups = {
            s: aws.cloudwatch.LogGroup(
                f"{name}-{s}", name=f"/tq/{name}/{s}", retention_in_days=config.log_retention_days, opts=child
            )
            for s in SERVICES
        }
        execution_role = aws.iam.Role(
            f"{name}-execution", assume_role_policy=iam.assume_role_policy("ecs-tasks.amazonaws.com"), opts=child
        )
        aws.iam.RolePolicy(
            f"{name}-execution",
            role=execution_role.id,
            policy=iam.execution_policy(
                [r.arn for r in repositories.repositories.values()], [g.arn for g in self.log_groups.values()]
            ),
            opts=child,
        )
        self.task_roles = {s: self._task_role(f"{name}-{s}", s, resources, child) for s in SERVICES}
        self.alb, self.target_group, listener, alb_sg = self._load_balancer(name, config, network, child)
        gateway_sg = self._gateway_security_group(name, network, alb_sg, child)
        self._metrics_ingress(name, network, child)
        if not config.deploy_services:
            self.register_outputs({})
            return
        self.services: dict[str, aws.ecs.Service] = {}
        for service in SERVICES:
            definition = aws.ecs.TaskDefinition(
                f"{name}-{service}",
                family=f"{name}-{service}",
                cpu=str(SIZES[service][0]),
                memory=str(SIZES[service][1]),
                network_mode="awsvpc",
                requires_compatibilities=["FARGATE"],
                runtime_platform={"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
                execution_role_arn=execution_role.arn,
                task_role_arn=self.task_roles[service].arn,
                container_definitions=pulumi.Output.json_dumps(
                    [self._container(service, config, settings, repositories, self.log_groups[service].name)]
                ),
                opts=child,
            )
            gateway = service == "gateway"
            self.services[service] = aws.ecs.Service(
                f"{name}-{service}",
                cluster=self.cluster.arn,
                task_definition=definition.arn,
                launch_type="FARGATE",
                desired_count=_initial_count(service, config),
                network_configuration={
                    "subnets": [s.id for s in network.private_subnets],
                    "security_groups": [network.tasks_sg.id, *([gateway_sg.id] if gateway else [])],
                    "assign_public_ip": False,
                },
                load_balancers=(
                    [
                        {
                            "target_group_arn": self.target_group.arn,
                            "container_name": service,
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
                    ignore_changes=["desiredCount"] if service in AUTOSCALED else None,
                    # ECS refuses a service whose target group no load balancer uses yet.
                    depends_on=[listener] if gateway else None,
                ),
            )
        self._autoscaling(name, config, queue_names, child)
        self.register_outputs({})

    def _task_role(
        self, name: str, service: str, resources: iam.AppResources, child: pulumi.ResourceOptions
    ) -> aws.iam.Role:
        role = aws.iam.Role(name, assume_role_policy=iam.assume_role_policy("ecs-tasks.amazonaws.com"), opts=child)
        aws.iam.RolePolicy(name, role=role.id, policy=iam.task_policy(operations_of(service), resources), opts=child)
        return role

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
        service: str,
        config: StackConfig,
        settings: CoreSettings,
        repositories: Repositories,
        log_group: pulumi.Output[str],
    ) -> dict[str, Any]:
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
        if service == "executor":
            environment |= executor_environment(config)
            if config.scripts is not None:  # root only to give each slot's scripts an unprivileged uid of their own
                extra["user"] = "0"
        return {
            **extra,
            "name": service,
            "image": pulumi.Output.concat(
                repositories.repositories[service].repository_url, ":", config.image_tags[service]
            ),
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

    def _autoscaling(
        self, name: str, config: StackConfig, queue_names: list[pulumi.Input[str]], child: pulumi.ResourceOptions
    ) -> None:
        targets = {}
        for service, low, high in (
            ("gateway", config.gateway_min, config.gateway_max),
            ("executor", config.executor_min, config.executor_max),
        ):
            targets[service] = aws.appautoscaling.Target(
                f"{name}-{service}",
                service_namespace="ecs",
                scalable_dimension="ecs:service:DesiredCount",
                resource_id=pulumi.Output.concat("service/", self.cluster.name, "/", self.services[service].name),
                min_capacity=low,
                max_capacity=high,
                opts=child,
            )
        aws.appautoscaling.Policy(
            f"{name}-gateway-requests",
            policy_type="TargetTrackingScaling",
            service_namespace="ecs",
            scalable_dimension=targets["gateway"].scalable_dimension,
            resource_id=targets["gateway"].resource_id,
            target_tracking_scaling_policy_configuration={
                "target_value": config.gateway_requests_per_target,
                "predefined_metric_specification": {
                    "predefined_metric_type": "ALBRequestCountPerTarget",
                    "resource_label": pulumi.Output.concat(self.alb.arn_suffix, "/", self.target_group.arn_suffix),
                },
            },
            opts=child,
        )
        # Backlog per task: visible messages over the three queues / running executor tasks (metric math).
        visible: list[dict[str, Any]] = [
            {
                "id": f"q{n}",
                "return_data": False,
                "metric_stat": {
                    "stat": "Sum",
                    "metric": {
                        "namespace": "AWS/SQS",
                        "metric_name": "ApproximateNumberOfMessagesVisible",
                        "dimensions": [{"name": "QueueName", "value": queue}],
                    },
                },
            }
            for n, queue in enumerate(queue_names)
        ]
        running = {
            "id": "tasks",
            "return_data": False,
            "metric_stat": {
                "stat": "Average",
                "metric": {
                    "namespace": "ECS/ContainerInsights",
                    "metric_name": "RunningTaskCount",
                    "dimensions": [
                        {"name": "ClusterName", "value": self.cluster.name},
                        {"name": "ServiceName", "value": self.services["executor"].name},
                    ],
                },
            },
        }
        total = " + ".join(f"q{n}" for n in range(len(visible)))
        aws.appautoscaling.Policy(
            f"{name}-executor-backlog",
            policy_type="TargetTrackingScaling",
            service_namespace="ecs",
            scalable_dimension=targets["executor"].scalable_dimension,
            resource_id=targets["executor"].resource_id,
            target_tracking_scaling_policy_configuration={
                "target_value": config.executor_backlog_per_task,
                "customized_metric_specification": {
                    "metrics": [
                        *visible,
                        running,
                        {
                            "id": "backlog",
                            "expression": f"IF(tasks > 0, ({total}) / tasks, {total})",
                            "return_data": True,
                        },
                    ]
                },
            },
            opts=child,
        )


def _initial_count(service: str, config: StackConfig) -> int:
    return {
        "gateway": config.gateway_min,
        "executor": config.executor_min,
        "scheduler": config.scheduler_count,
        "reaper": config.reaper_count,
    }[service]


def queue_names(settings: CoreSettings) -> list[str]:
    """The priority queues' names (the executor's backlog is theirs)."""
    return [settings.queue_name(p) for p in Priority]
