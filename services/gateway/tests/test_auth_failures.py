"""Failed authentications per client address: 429 before any token lookup once an address spends its budget."""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from tq_gateway.auth_failures import client_address
from tq_gateway.settings import GatewaySettings
from tq_gateway.testing import client_over_fakes
from tqcore.api_keys import ApiKeys
from tqcore.testing import FixedClock, InMemoryApiKeyStore

pytestmark = pytest.mark.unit

ATTACKER, NEIGHBOUR = "203.0.113.7", "198.51.100.9"


def bogus(n: int) -> str:
    """A well-formed API key of no key: refusing it costs a lookup."""
    return f"tq_{n:016x}_{'A' * 43}"


#: A budget of 3 failures that refills too slowly to matter during a test.
BUDGET = {"auth_failure_burst": 3, "auth_failure_rps": 0.001}


def get(client: falcon.testing.TestClient, token: str | None, address: str, **headers: str) -> Any:
    """``GET /v1/tasks?group=team-a`` with ``token`` from ``address``."""
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.simulate_get("/v1/tasks", params={"group": "team-a"}, headers=headers, remote_addr=address)


@pytest.fixture
def keys() -> tuple[ApiKeys, InMemoryApiKeyStore]:
    store = InMemoryApiKeyStore()
    return ApiKeys(store, FixedClock()), store


def test_an_address_over_its_budget_gets_429_without_a_lookup_and_known_tokens_keep_working(
    keys: tuple[ApiKeys, InMemoryApiKeyStore],
) -> None:
    api_keys, store = keys
    _, cached_key = api_keys.create("alice", ["team-a"])
    _, fresh_key = api_keys.create("alice", ["team-a"])
    client = client_over_fakes(GatewaySettings(auth="keys,dev", rate_limit_rps=0, **BUDGET), api_keys=api_keys)
    assert get(client, cached_key, ATTACKER).status_code == 200  # this worker now knows the key
    # Given an address that failed authentication 3 times (two unknown keys, one request without a token)
    assert [get(client, bogus(n), ATTACKER).status_code for n in range(2)] == [401, 401]
    assert get(client, None, ATTACKER).status_code == 401
    finds = store.finds
    # When it tries once more, with another unknown key or none
    refused = get(client, bogus(9), ATTACKER)
    # Then it gets a 429 problem with Retry-After, and the key was not looked up
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) >= 1
    assert "failed authentications" in refused.json["detail"]
    assert get(client, None, ATTACKER).status_code == 429
    assert store.finds == finds
    # and tokens known without a lookup still work from there (a cached key, a dev token); a key that would
    # need a lookup waits like the attacker
    assert get(client, cached_key, ATTACKER).status_code == 200
    assert get(client, "dev-alice", ATTACKER).status_code == 200
    assert get(client, fresh_key, ATTACKER).status_code == 429
    assert store.finds == finds
    # and another address has a budget of its own
    assert get(client, bogus(9), NEIGHBOUR).status_code == 401
    assert get(client, fresh_key, NEIGHBOUR).status_code == 200


def test_behind_a_trusted_proxy_the_forwarded_address_is_budgeted_and_its_spoofed_part_ignored() -> None:
    client = client_over_fakes(GatewaySettings(auth="dev", rate_limit_rps=0, trusted_proxy_hops=1, **BUDGET))
    proxy = "10.0.0.2"  # every request comes from the load balancer
    # Given the attacker spent its budget through the proxy, naming a new fake origin each time
    for n in range(3):
        response = get(client, "nope", proxy, **{"X-Forwarded-For": f"192.0.2.{n}, {ATTACKER}"})
        assert response.status_code == 401
    # Then its next request is refused, whatever it puts in front, and a neighbour through the same proxy is not
    assert get(client, "nope", proxy, **{"X-Forwarded-For": f"192.0.2.99, {ATTACKER}"}).status_code == 429
    assert get(client, "nope", proxy, **{"X-Forwarded-For": NEIGHBOUR}).status_code == 401


def test_no_budget_when_switched_off() -> None:
    client = client_over_fakes(GatewaySettings(auth="dev", rate_limit_rps=0, auth_failure_rps=0, auth_failure_burst=1))
    assert [get(client, "nope", ATTACKER).status_code for _ in range(5)] == [401] * 5


class Request:
    """What ``client_address`` reads of a request."""

    def __init__(self, remote_addr: str, forwarded: str | None = None) -> None:
        self.remote_addr = remote_addr
        self._forwarded = forwarded

    def get_header(self, name: str) -> str | None:
        return self._forwarded if name == "X-Forwarded-For" else None


@pytest.mark.parametrize(
    ("peer", "forwarded", "hops", "expected"),
    [
        ("10.0.0.2", "1.1.1.1", 0, "10.0.0.2"),  # no trusted proxy: the header is the client's say
        ("10.0.0.2", "1.1.1.1, 2.2.2.2", 1, "2.2.2.2"),  # the entry our proxy appended
        ("10.0.0.2", "1.1.1.1,2.2.2.2 , 3.3.3.3", 2, "2.2.2.2"),
        ("10.0.0.2", "2.2.2.2", 2, "10.0.0.2"),  # fewer entries than proxies: not through them
        ("10.0.0.2", None, 1, "10.0.0.2"),
        ("2001:db8:1:2:3:4:5:6", None, 0, "2001:db8:1:2::/64"),  # one IPv6 host's share, not one address
        ("::ffff:192.0.2.1", None, 0, "192.0.2.1"),
    ],
)
def test_the_client_address(peer: str, forwarded: str | None, hops: int, expected: str) -> None:
    assert client_address(Request(peer, forwarded), hops) == expected  # type: ignore[arg-type]
