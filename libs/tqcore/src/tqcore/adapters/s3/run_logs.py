"""Run logs in S3: one object per attempt under ``logs/``, deleted by the bucket's lifecycle rule.

Objects are named by task and claim (``logs/<task id>/<claim_seq>.log``): the claim's token is unique per
attempt for ever, while run ids repeat after a redrive. The lifecycle rule (set by ``tq-bootstrap``) works
in whole days (S3 deletes at the first midnight UTC after creation + days), so an object is kept at least until
its run's ``log_expires_at``; the gateway answers 410 from that time on, and whenever the object is gone.
"""

from __future__ import annotations

import math
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tqcore.errors import StoreUnavailable
from tqcore.settings import CoreSettings

#: Every run log lives under this prefix, the one the lifecycle rule expires.
LOG_PREFIX = "logs/"
#: The lifecycle rule's id.
LIFECYCLE_RULE_ID = "tq-run-logs"
_MISSING = {"NoSuchKey", "404", "NotFound"}


def log_key(task_id: str, claim_seq: int) -> str:
    """The object key of one attempt's log."""
    return f"{LOG_PREFIX}{task_id}/{claim_seq:010d}.log"


def lifecycle_days(retention_s: int) -> int:
    """S3 expires objects in whole days: the retention rounded up, at least one."""
    return max(1, math.ceil(retention_s / 86400))


class S3RunLogs:
    """The run log store on one bucket (``settings.bucket_name``)."""

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        self._s3 = client
        self._bucket = settings.bucket_name

    def check(self) -> None:
        """One ``HeadBucket``: raises if the bucket cannot be reached (readiness)."""
        self._s3.head_bucket(Bucket=self._bucket)

    def put(self, task_id: str, claim_seq: int, body: bytes) -> None:
        """One ``PutObject``; raises ``StoreUnavailable`` if S3 refuses or cannot be reached."""
        try:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=log_key(task_id, claim_seq),
                Body=body,
                ContentType="text/plain; charset=utf-8",
            )
        except (ClientError, BotoCoreError) as error:
            raise StoreUnavailable(f"could not store the run log: {error}") from error

    def get(self, task_id: str, claim_seq: int) -> bytes | None:
        """One ``GetObject``; ``None`` if the object is gone (expired by the lifecycle rule)."""
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=log_key(task_id, claim_seq))
            body: bytes = response["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _MISSING:
                return None
            raise StoreUnavailable(f"could not read the run log: {error}") from error
        except BotoCoreError as error:
            raise StoreUnavailable(f"could not read the run log: {error}") from error
        return body
