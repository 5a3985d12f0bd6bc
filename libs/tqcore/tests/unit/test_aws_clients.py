"""The boto3 clients every service builds: the User-Agent is built once per client, not twice per call."""

from __future__ import annotations

import pytest

from tqcore.adapters import aws
from tqcore.settings import CoreSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("service", ["dynamodb", "sqs", "s3"])
def test_a_client_builds_its_user_agent_once(service: str) -> None:
    # Given a client as the services build it (no call is made)
    made = aws.client(CoreSettings(endpoint_url="http://127.0.0.1:9", region="eu-west-1"), service)
    creator = made._user_agent_creator
    # Then every request gets the same string object: built at creation, never rebuilt per call
    first = creator.to_string()
    assert first.startswith("Boto3/")
    assert creator.to_string() is first


def test_a_resources_client_builds_its_user_agent_once() -> None:
    made = aws.resource(CoreSettings(endpoint_url="http://127.0.0.1:9", region="eu-west-1"), "sqs")
    creator = made.meta.client._user_agent_creator
    assert creator.to_string() is creator.to_string()
