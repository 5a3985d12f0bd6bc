"""Create tq's table, indexes, TTL, each pool's queues and dead-letter queues, and bucket if missing (idempotent).

``tq-bootstrap`` runs it from the command line; ``make run`` and the tests call :func:`bootstrap`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Annotated, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from tqcore.adapters import aws
from tqcore.adapters.dynamodb import keys
from tqcore.adapters.s3 import run_logs
from tqcore.domain.model import Priority
from tqcore.settings import DEFAULT_POOL, POOL_PATTERN, CoreSettings, load_settings

log = logging.getLogger(__name__)

#: Messages are kept 14 days (the SQS maximum) in queues and dead-letter queues.
RETENTION_S = 14 * 86400


class BootstrapSettings(CoreSettings):
    """What ``tq-bootstrap`` creates beyond the shared settings."""

    #: Executor pools besides ``default`` whose queues to create (comma-separated; the default pool's always are).
    pools: Annotated[list[Annotated[str, Field(pattern=POOL_PATTERN)]], NoDecode] = Field(default_factory=list)

    @field_validator("pools", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def bootstrap(settings: CoreSettings, pools: Sequence[str] = ()) -> None:
    """Make sure every resource exists and is configured: the queues of the default pool and of ``pools``."""
    create_table(aws.client(settings, "dynamodb"), settings.table_name)
    sqs = aws.client(settings, "sqs")
    for pool in dict.fromkeys([DEFAULT_POOL, *pools]):
        for priority in Priority:
            create_queue_pair(sqs, settings, priority, pool)
    create_bucket(aws.client(settings, "s3"), settings)


def create_table(ddb: Any, name: str) -> None:
    """The single table with its GSIs and TTL; a table made by an older version gets the indexes it lacks."""
    try:
        ddb.create_table(
            TableName=name,
            BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in table_attribute_names()],
            GlobalSecondaryIndexes=global_secondary_indexes(),
        )
        log.info("created table %s", name)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceInUseException":
            raise
    _wait_active(ddb, name)
    _add_missing_indexes(ddb, name)
    ttl = ddb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": keys.TTL_ATTRIBUTE}
        )


def table_attribute_names() -> list[str]:
    """Every key attribute of the table and its indexes (all strings), sorted."""
    return sorted({"PK", "SK", *(a for pair in keys.INDEXES.values() for a in pair)})


def global_secondary_indexes() -> list[dict[str, Any]]:
    """The table's GSIs as ``CreateTable`` takes them (the Pulumi program builds the same from this)."""
    return [
        {
            "IndexName": index,
            "KeySchema": [{"AttributeName": pk, "KeyType": "HASH"}, {"AttributeName": sk, "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "KEYS_ONLY" if index in keys.KEYS_ONLY_INDEXES else "ALL"},
        }
        for index, (pk, sk) in keys.INDEXES.items()
    ]


#: How long bootstrap waits for DynamoDB to build an index added to an existing table (it reads the whole table).
INDEX_BUILD_S = 900


def _add_missing_indexes(ddb: Any, name: str) -> None:
    """Create the GSIs an existing table lacks (one ``UpdateTable`` each, as DynamoDB allows), waiting for each."""
    table = ddb.describe_table(TableName=name)["Table"]
    present = {index["IndexName"] for index in table.get("GlobalSecondaryIndexes", [])}
    for index in global_secondary_indexes():
        if index["IndexName"] in present:
            continue
        pk, sk = (key["AttributeName"] for key in index["KeySchema"])
        ddb.update_table(
            TableName=name,
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in (pk, sk)],
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )
        log.info("adding index %s to table %s", index["IndexName"], name)
        _wait_active(ddb, name, INDEX_BUILD_S, index=index["IndexName"])


def _wait_active(ddb: Any, name: str, timeout_s: float = 60, *, index: str | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not _active(ddb.describe_table(TableName=name)["Table"], index):
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {name} did not become ACTIVE in {timeout_s} s")
        time.sleep(0.2)


def _active(table: dict[str, Any], index: str | None) -> bool:
    """Whether the table (and ``index``, if named: DynamoDB builds a new index on its own) is ``ACTIVE``."""
    if table["TableStatus"] != "ACTIVE":
        return False
    indexes = {i["IndexName"]: i.get("IndexStatus", "ACTIVE") for i in table.get("GlobalSecondaryIndexes", [])}
    return index is None or indexes.get(index) == "ACTIVE"


def create_queue_pair(sqs: Any, settings: CoreSettings, priority: Priority, pool: str = DEFAULT_POOL) -> None:
    """A pool's FIFO queue of a priority and its FIFO dead-letter queue, linked by a RedrivePolicy."""
    dlq_url = _ensure_queue(sqs, settings.dlq_name(priority, pool), dead_letter_queue_attributes())
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    _ensure_queue(sqs, settings.queue_name(priority, pool), queue_attributes(settings, dlq_arn))


def dead_letter_queue_attributes() -> dict[str, str]:
    """A dead-letter queue's attributes (the Pulumi program sets the same): FIFO, kept 14 days."""
    return {
        "FifoQueue": "true",
        "MessageRetentionPeriod": str(RETENTION_S),
        # High-throughput FIFO: dedup and throughput limits per message group (= per task).
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
    }


def queue_attributes(settings: CoreSettings, dlq_arn: str) -> dict[str, str]:
    """A priority queue's attributes: a dead-letter queue's, visibility = lease, redrive after ``max_receives``."""
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": settings.max_receives})
    return {**dead_letter_queue_attributes(), "VisibilityTimeout": str(settings.lease_s), "RedrivePolicy": redrive}


def _ensure_queue(sqs: Any, name: str, attributes: dict[str, str]) -> str:
    try:
        url: str = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as error:
        if (
            "NonExistentQueue" not in error.response["Error"]["Code"]
            and "QueueDoesNotExist" not in error.response["Error"]["Code"]
        ):
            raise
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        log.info("created queue %s", name)
        return url
    mutable = {k: v for k, v in attributes.items() if k != "FifoQueue"}
    sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)
    return url


def create_bucket(s3: Any, settings: CoreSettings) -> None:
    """The log bucket: private, encrypted at rest, run logs expired by a lifecycle rule."""
    try:
        if settings.region == "us-east-1":
            s3.create_bucket(Bucket=settings.bucket_name)
        else:
            s3.create_bucket(
                Bucket=settings.bucket_name, CreateBucketConfiguration={"LocationConstraint": settings.region}
            )
        log.info("created bucket %s", settings.bucket_name)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    encryption = {"Rules": [ENCRYPTION_RULE]}
    s3.put_bucket_encryption(Bucket=settings.bucket_name, ServerSideEncryptionConfiguration=encryption)
    s3.put_public_access_block(Bucket=settings.bucket_name, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
    # Replaces the bucket's whole lifecycle configuration: tq owns this bucket.
    s3.put_bucket_lifecycle_configuration(
        Bucket=settings.bucket_name, LifecycleConfiguration={"Rules": [lifecycle_rule(settings)]}
    )


#: The log bucket's default encryption (the Pulumi program sets the same).
ENCRYPTION_RULE: dict[str, Any] = {
    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
    "BucketKeyEnabled": True,
}
#: Nothing in the log bucket is ever public.
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def lifecycle_rule(settings: CoreSettings) -> dict[str, Any]:
    """The rule that expires run logs (whole days after ``run_log_retention_s``) and stale multipart uploads."""
    return {
        "ID": run_logs.LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": run_logs.LOG_PREFIX},
        "Expiration": {"Days": run_logs.lifecycle_days(settings.run_log_retention_s)},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }


def main() -> int:
    """``tq-bootstrap``: create the resources named by the ``TQ_*`` settings."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = load_settings(BootstrapSettings, "tq-bootstrap")
    try:
        bootstrap(settings, settings.pools)
    except (ClientError, BotoCoreError, TimeoutError) as error:
        print(f"tq-bootstrap: cannot create resources at {settings.endpoint_url or 'AWS'}: {error}", file=sys.stderr)
        return 1
    pools = ", ".join(dict.fromkeys([DEFAULT_POOL, *settings.pools]))
    print(f"tq-bootstrap: resources for prefix {settings.prefix!r} (pools {pools}) are ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
