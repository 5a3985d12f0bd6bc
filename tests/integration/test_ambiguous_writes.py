"""Writes whose answer is lost after AWS applied them (a reset after forwarding): botocore sends them again, and
tq must take its own earlier write for what it is. Through tqdev.faults' proxy, against a real emulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.api_keys import DynamoApiKeyStore
from tqcore.api_keys import ApiKeys
from tqcore.bootstrap import bootstrap
from tqcore.domain.access import Principal
from tqcore.settings import CoreSettings
from tqcore.testing import FixedClock
from tqdev.faults import Fault, FaultProxy
from tqdev.stack import unique_prefix

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(emulator: str) -> Iterator[FaultProxy]:
    with FaultProxy(upstream=emulator) as started:
        yield started


@pytest.fixture
def settings(proxy: FaultProxy) -> CoreSettings:
    made = CoreSettings(endpoint_url=proxy.url, prefix=unique_prefix())
    bootstrap(made)
    return made


def test_an_api_key_whose_put_answer_was_lost_is_created_once(proxy: FaultProxy, settings: CoreSettings) -> None:
    keys = ApiKeys(DynamoApiKeyStore(aws.client(settings, "dynamodb"), settings), FixedClock())
    # Given the put of the new key is applied but its answer lost (botocore sends it again, and the
    # key's own condition, attribute_not_exists, then fails)
    rule = proxy.inject(Fault.reset(after_forward=True), service="dynamodb", operation="PutItem", times=1)
    key, token = keys.create("alice", ["team-a"], by="ops")
    assert rule.hits == 1
    assert proxy.calls[("dynamodb", "PutItem")] == 2
    # Then the key exists, once, and authenticates
    assert keys.authenticate(token) == Principal("alice", frozenset({"team-a"}))
    assert [k.key_id for k in keys.all()] == [key.key_id]
