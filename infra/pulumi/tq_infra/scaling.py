"""Autoscaling of ECS services: a scalable target per service, a target-tracking policy on it; each executor
pool's holds the backlog of its own queues per running task."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from tq_infra.pools import Pool


def scalable(
    name: str, cluster: aws.ecs.Cluster, service: aws.ecs.Service, low: int, high: int, child: pulumi.ResourceOptions
) -> aws.appautoscaling.Target:
    """The service's task count, for autoscaling to set between ``low`` and ``high``."""
    return aws.appautoscaling.Target(
        name,
        service_namespace="ecs",
        scalable_dimension="ecs:service:DesiredCount",
        resource_id=pulumi.Output.concat("service/", cluster.name, "/", service.name),
        min_capacity=low,
        max_capacity=high,
        opts=child,
    )


def target_tracking(
    name: str, target: aws.appautoscaling.Target, configuration: dict[str, Any], child: pulumi.ResourceOptions
) -> aws.appautoscaling.Policy:
    """A target-tracking policy on ``target`` (``configuration``: the target value and its metric)."""
    return aws.appautoscaling.Policy(
        name,
        policy_type="TargetTrackingScaling",
        service_namespace="ecs",
        scalable_dimension=target.scalable_dimension,
        resource_id=target.resource_id,
        target_tracking_scaling_policy_configuration=configuration,
        opts=child,
    )


def executor_backlog_policy(
    name: str,
    cluster: aws.ecs.Cluster,
    service: aws.ecs.Service,
    pool: Pool,
    queue_names: list[str],
    child: pulumi.ResourceOptions,
) -> aws.appautoscaling.Policy:
    """A target (the pool's min and max) and a target-tracking policy: visible messages over the pool's priority
    queues / the pool's running tasks (metric math), held at ``pool.backlog_per_task``."""
    target = scalable(name, cluster, service, pool.min_count, pool.max_count, child)
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
                    {"name": "ClusterName", "value": cluster.name},
                    {"name": "ServiceName", "value": service.name},
                ],
            },
        },
    }
    total = " + ".join(f"q{n}" for n in range(len(visible)))
    backlog = {"id": "backlog", "expression": f"IF(tasks > 0, ({total}) / tasks, {total})", "return_data": True}
    return target_tracking(
        f"{name}-backlog",
        target,
        {
            "target_value": pool.backlog_per_task,
            "customized_metric_specification": {"metrics": [*visible, running, backlog]},
        },
        child,
    )
