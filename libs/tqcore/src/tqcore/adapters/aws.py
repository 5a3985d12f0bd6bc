"""boto3 clients built from settings, with every AWS call counted (our cost and our throughput)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from prometheus_client import Counter

from tqcore.settings import CoreSettings

AWS_CALLS = Counter("tq_aws_calls_total", "AWS API calls made, by service and operation.", ["service", "operation"])
DYNAMODB_THROTTLES = Counter(
    "tq_dynamodb_throttles_total",
    "DynamoDB requests refused for throughput (each try, retries included).",
    ["operation"],
)
#: Error codes DynamoDB answers a request it throttled with (a cancelled transaction's reasons carry the last).
THROTTLE_CODES = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded", "ThrottlingError"}
)

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=25,
    max_pool_connections=50,
    tcp_keepalive=True,
    # Every request tq makes has a fixed shape (and the service validates anyway): client-side validation
    # only costs CPU, a few per cent of an executor's at a peak.
    parameter_validation=False,
)

#: For readiness probes: one retry and short timeouts, so a poll answers within seconds even when AWS does not.
_PROBE_CONFIG = _CONFIG.merge(
    Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=1, read_timeout=2)
)


def _fix_user_agent(made: Any) -> None:
    """Build the client's ``User-Agent`` header once instead of twice per call.

    botocore rebuilds the string on every call (in ``_convert_to_request_dict`` and again in a
    ``request-created`` handler) from the same components plus per-call feature codes it only reports to AWS:
    about 7% of a call's CPU, measured on a DynamoDB ``UpdateItem``, in every process. The string is the one
    the first build gives (without per-call feature codes). A botocore without that builder is left alone.
    """
    creator = getattr(made, "_user_agent_creator", None)
    if creator is None or not callable(getattr(creator, "to_string", None)):
        return
    fixed = creator.to_string()
    creator.to_string = lambda: fixed


def _count_call(model: Any, **_: Any) -> None:
    AWS_CALLS.labels(model.service_model.service_name, model.name).inc()


def _count_throttle(response: Any = None, operation: Any = None, **_: Any) -> None:
    # needs-retry fires once per HTTP try, with that try's parsed response (None after a connection error).
    if not response:
        return
    error = response[1].get("Error", {})
    reasons = response[1].get("CancellationReasons") or []
    if error.get("Code") in THROTTLE_CODES or any(r.get("Code") in THROTTLE_CODES for r in reasons):
        DYNAMODB_THROTTLES.labels(operation.name).inc()


def client(settings: CoreSettings, service: str, *, deadline_s: float | None = None, probe: bool = False) -> Any:
    """A client for ``service`` (``dynamodb``, ``sqs``, ``s3``) at the configured endpoint and region.

    With ``deadline_s``, each try of a call gives up after that long (connect or read), and a call is tried twice
    at most: for calls that must end inside a lease rather than wait out botocore's defaults (heartbeats). With
    ``probe``, one that gives up within seconds (for readiness checks).
    """
    config = _PROBE_CONFIG if probe else _CONFIG
    if deadline_s is not None:
        config = _CONFIG.merge(
            Config(
                connect_timeout=deadline_s,
                read_timeout=deadline_s,
                retries={"mode": "standard", "total_max_attempts": 2},
            )
        )
    session = boto3.session.Session(region_name=settings.region)
    made = session.client(service, endpoint_url=settings.endpoint_url, config=config)  # type: ignore[call-overload]
    return counted(made)


def resource(settings: CoreSettings, service: str) -> Any:
    """A boto3 resource (for libraries that want one), its client counted like :func:`client`'s."""
    session = boto3.session.Session(region_name=settings.region)
    made = session.resource(service, endpoint_url=settings.endpoint_url, config=_CONFIG)  # type: ignore[call-overload]
    counted(made.meta.client)
    return made


def counted(made: Any) -> Any:
    """Count every API call ``made`` makes in ``tq_aws_calls_total`` (and build its User-Agent once)."""
    _fix_user_agent(made)
    # before-call fires once per API call; botocore's own retries of that call are not counted again.
    made.meta.events.register("before-call.*.*", _count_call)
    made.meta.events.register("needs-retry.dynamodb.*", _count_throttle)
    return made
