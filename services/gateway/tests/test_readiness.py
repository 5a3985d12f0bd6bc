"""``/readyz`` over fakes: every AWS dependency is asked, cheaply, and the one that is down is named."""

from __future__ import annotations

from collections.abc import Callable

import falcon.testing
import pytest

from tq_gateway.settings import GatewaySettings
from tq_gateway.testing import client_over_fakes
from tqcore.testing import InMemoryRegistry

pytestmark = pytest.mark.unit


class Probe:
    """A dependency check that counts its calls and fails while ``down`` is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.down: Exception | None = None

    def __call__(self) -> None:
        self.calls += 1
        if self.down is not None:
            raise self.down


class AwsError(Exception):
    """Shaped like botocore's ClientError: the code is in ``response``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


def ready_client(probes: dict[str, Callable[[], object]]) -> falcon.testing.TestClient:
    """A fresh gateway (so a fresh readiness cache) that requires a live executor, which there is."""
    registry = InMemoryRegistry(["echo"])
    registry.heartbeat("executor", "e-1", 60)
    return client_over_fakes(GatewaySettings(ready_requires=["executor"]), registry=registry, probes=probes)


def test_readyz_names_each_dependency_that_does_not_answer() -> None:
    sqs, s3 = Probe(), Probe()
    api = ready_client({"sqs": sqs, "s3": s3})
    assert api.simulate_get("/readyz").status_code == 200

    # When SQS throttles and S3 cannot be reached, with the cache run out
    sqs.down, s3.down = AwsError("ThrottlingException"), ConnectionResetError()
    api = ready_client({"sqs": sqs, "s3": s3})
    answer = api.simulate_get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json["unreachable"] == ["s3", "sqs"]
    assert "sqs (ThrottlingException)" in answer.json["detail"]
    assert "s3 (ConnectionResetError)" in answer.json["detail"]


def test_readyz_asks_each_dependency_once_per_cache_period() -> None:
    sqs = Probe()
    api = ready_client({"sqs": sqs})
    for _ in range(20):
        assert api.simulate_get("/readyz").status_code == 200
    assert sqs.calls == 1


def test_readyz_still_waits_for_required_services() -> None:
    api = client_over_fakes(GatewaySettings(ready_requires=["scheduler"]), probes={"sqs": Probe()})
    answer = api.simulate_get("/readyz")
    assert answer.status_code == 503
    assert "scheduler" in answer.json["detail"]


def test_a_required_service_that_does_not_exist_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="TQ_READY_REQUIRES names executors: no such service"):
        GatewaySettings(ready_requires=["executors"])
