"""The S3 run log store and the bucket's lifecycle rule, against the emulator."""

from __future__ import annotations

import pytest
from botocore.exceptions import EndpointConnectionError

from tqcore.adapters import aws
from tqcore.adapters.s3.run_logs import LOG_PREFIX, S3RunLogs, lifecycle_days, log_key
from tqcore.bootstrap import bootstrap
from tqcore.errors import StoreUnavailable
from tqcore.settings import CoreSettings
from tqdev.stack import unique_prefix

pytestmark = pytest.mark.integration


def test_a_log_is_stored_per_claim_and_read_back_byte_for_byte(settings: CoreSettings) -> None:
    logs = S3RunLogs(aws.client(settings, "s3"), settings)
    body = b"".join(b"%d\n" % n for n in range(1, 10001)) + b"\xff not utf-8\n"
    # When two attempts of one task store their logs (a redriven run id repeats; the claim never does)
    logs.put("task-1", 3, body)
    logs.put("task-1", 9, b"second\n")
    # Then each is read back as stored, and an attempt that stored none reads as absent
    assert logs.get("task-1", 3) == body
    assert logs.get("task-1", 9) == b"second\n"
    assert logs.get("task-1", 4) is None
    head = aws.client(settings, "s3").head_object(Bucket=settings.bucket_name, Key=log_key("task-1", 3))
    assert head["ContentType"] == "text/plain; charset=utf-8"
    assert log_key("task-1", 3).startswith(LOG_PREFIX)


def test_bootstrap_sets_a_lifecycle_rule_of_whole_days_on_the_log_prefix(emulator: str) -> None:
    settings = CoreSettings(endpoint_url=emulator, prefix=unique_prefix(), run_log_retention_s=86401)
    bootstrap(settings)
    bootstrap(settings)  # idempotent
    rules = aws.client(settings, "s3").get_bucket_lifecycle_configuration(Bucket=settings.bucket_name)["Rules"]
    assert len(rules) == 1
    assert rules[0]["Status"] == "Enabled"
    assert rules[0]["Filter"] == {"Prefix": LOG_PREFIX}
    assert rules[0]["Expiration"] == {"Days": 2}


def test_lifecycle_days_round_up_to_at_least_one() -> None:
    assert [lifecycle_days(s) for s in (1, 5, 86400, 86401, 30 * 86400)] == [1, 1, 1, 2, 30]


def test_an_unreachable_bucket_is_store_unavailable() -> None:
    settings = CoreSettings(endpoint_url="http://127.0.0.1:9", prefix=unique_prefix())
    client = aws.client(settings, "s3")
    logs = S3RunLogs(client, settings)
    with pytest.raises(StoreUnavailable) as raised:
        logs.put("task-1", 3, b"x\n")
    assert isinstance(raised.value.__cause__, EndpointConnectionError)
