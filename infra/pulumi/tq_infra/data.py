"""The data tier: the single table, the FIFO queues with their dead-letter queues, the run-log bucket.

Every attribute comes from ``tqcore.bootstrap`` (what the local stack and the tests create), so what runs in AWS
is what was tested; Pulumi only translates names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pulumi
import pulumi_aws as aws

from tq_infra.pools import DEFAULT_POOL, queue_names
from tqcore import bootstrap
from tqcore.adapters.dynamodb import keys
from tqcore.domain.model import Priority
from tqcore.settings import CoreSettings

#: SQS attribute name -> (``aws.sqs.Queue`` argument, conversion). An attribute bootstrap sets that is missing
#: here fails the build instead of being dropped.
QUEUE_ARGUMENTS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "FifoQueue": ("fifo_queue", lambda v: v == "true"),
    "MessageRetentionPeriod": ("message_retention_seconds", int),
    "DeduplicationScope": ("deduplication_scope", str),
    "FifoThroughputLimit": ("fifo_throughput_limit", str),
    "VisibilityTimeout": ("visibility_timeout_seconds", int),
    "RedrivePolicy": ("redrive_policy", str),
}


def queue_arguments(attributes: dict[str, str]) -> dict[str, Any]:
    """``aws.sqs.Queue`` keyword arguments for SQS ``attributes``."""
    return {QUEUE_ARGUMENTS[k][0]: QUEUE_ARGUMENTS[k][1](v) for k, v in attributes.items()}


class Table(pulumi.ComponentResource):
    """The single table: on demand, point-in-time recovery, TTL, its GSIs (``bootstrap.global_secondary_indexes``,
    five today), optional replicas."""

    def __init__(
        self, name: str, settings: CoreSettings, replica_regions: list[str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("tq:data:Table", name, None, opts)
        indexes = [
            {
                "name": index["IndexName"],
                "key_schemas": [
                    {"attribute_name": k["AttributeName"], "key_type": k["KeyType"]} for k in index["KeySchema"]
                ],
                "projection_type": index["Projection"]["ProjectionType"],
            }
            for index in bootstrap.global_secondary_indexes()
        ]
        self.table = aws.dynamodb.Table(
            name,
            name=settings.table_name,
            billing_mode="PAY_PER_REQUEST",
            hash_key="PK",
            range_key="SK",
            attributes=[{"name": a, "type": "S"} for a in bootstrap.table_attribute_names()],
            global_secondary_indexes=indexes,
            ttl={"attribute_name": keys.TTL_ATTRIBUTE, "enabled": True},
            point_in_time_recovery={"enabled": True},
            deletion_protection_enabled=True,
            # Replicas (a global table) need the stream; one region does not.
            stream_enabled=bool(replica_regions) or None,
            stream_view_type="NEW_AND_OLD_IMAGES" if replica_regions else None,
            replicas=[{"region_name": r, "point_in_time_recovery": True} for r in replica_regions],
            opts=pulumi.ResourceOptions(parent=self, protect=True),
        )
        self.register_outputs({"name": self.table.name, "arn": self.table.arn})


class Queues(pulumi.ComponentResource):
    """One pool's queues: a FIFO queue per priority, each with a FIFO dead-letter queue behind its
    RedrivePolicy."""

    def __init__(
        self,
        name: str,
        settings: CoreSettings,
        opts: pulumi.ResourceOptions | None = None,
        *,
        queue_attributes: Callable[[CoreSettings, str], dict[str, str]] = bootstrap.queue_attributes,
        pool: str = DEFAULT_POOL,
    ) -> None:
        super().__init__("tq:data:Queues", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.queues: dict[Priority, aws.sqs.Queue] = {}
        self.dead_letter_queues: dict[Priority, aws.sqs.Queue] = {}
        for priority, (queue_name, dlq_name) in queue_names(settings, pool).items():
            dlq = aws.sqs.Queue(
                dlq_name.removesuffix(".fifo"),
                name=dlq_name,
                **queue_arguments(bootstrap.dead_letter_queue_attributes()),
                opts=child,
            )
            # Only the RedrivePolicy depends on an ARN not known yet: the rest is converted now.
            static = queue_arguments(queue_attributes(settings, "arn:unknown"))
            if "redrive_policy" in static:
                static["redrive_policy"] = dlq.arn.apply(lambda arn: queue_attributes(settings, arn)["RedrivePolicy"])
            self.queues[priority] = aws.sqs.Queue(
                queue_name.removesuffix(".fifo"),
                name=queue_name,
                **static,
                opts=child,
            )
            self.dead_letter_queues[priority] = dlq
        self.register_outputs({})

    @property
    def arns(self) -> list[pulumi.Output[str]]:
        """Every queue and dead-letter queue."""
        return [q.arn for q in [*self.queues.values(), *self.dead_letter_queues.values()]]


class LogBucket(pulumi.ComponentResource):
    """The run-log bucket: encrypted, never public, run logs expired by a lifecycle rule."""

    def __init__(self, name: str, settings: CoreSettings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("tq:data:LogBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(name, bucket=settings.bucket_name, opts=child)
        rule = bootstrap.ENCRYPTION_RULE
        aws.s3.BucketServerSideEncryptionConfiguration(
            name,
            bucket=self.bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"]
                    },
                    "bucket_key_enabled": rule["BucketKeyEnabled"],
                }
            ],
            opts=child,
        )
        block = bootstrap.PUBLIC_ACCESS_BLOCK
        aws.s3.BucketPublicAccessBlock(
            name,
            bucket=self.bucket.id,
            block_public_acls=block["BlockPublicAcls"],
            ignore_public_acls=block["IgnorePublicAcls"],
            block_public_policy=block["BlockPublicPolicy"],
            restrict_public_buckets=block["RestrictPublicBuckets"],
            opts=child,
        )
        lifecycle = bootstrap.lifecycle_rule(settings)
        aws.s3.BucketLifecycleConfiguration(
            name,
            bucket=self.bucket.id,
            rules=[
                {
                    "id": lifecycle["ID"],
                    "status": lifecycle["Status"],
                    "filter": {"prefix": lifecycle["Filter"]["Prefix"]},
                    "expiration": {"days": lifecycle["Expiration"]["Days"]},
                    "abort_incomplete_multipart_upload": {
                        "days_after_initiation": lifecycle["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"]
                    },
                }
            ],
            opts=child,
        )
        self.register_outputs({"name": self.bucket.bucket})
