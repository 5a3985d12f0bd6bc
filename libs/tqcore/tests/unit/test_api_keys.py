"""API keys over the in-memory store: the token's shape, what is stored, and which tokens authenticate."""

from __future__ import annotations

import pytest

from tqcore.api_keys import ApiKeys, new_key_id, new_secret
from tqcore.domain.access import Principal, api_key_hash, api_key_id, api_key_token
from tqcore.testing import FixedClock, InMemoryApiKeyStore

pytestmark = pytest.mark.unit


def keys() -> tuple[ApiKeys, InMemoryApiKeyStore, FixedClock]:
    store, clock = InMemoryApiKeyStore(), FixedClock()
    return ApiKeys(store, clock), store, clock


def test_a_token_is_tq_key_id_secret_with_a_32_byte_secret() -> None:
    key_id, secret = new_key_id(), new_secret()
    token = api_key_token(key_id, secret)
    assert token == f"tq_{key_id}_{secret}"
    assert len(key_id) == 16
    assert len(secret) == 43  # 32 bytes, urlsafe base64 without padding
    assert api_key_id(token) == key_id


@pytest.mark.parametrize(
    "token",
    [
        "dev-alice",
        "tq_",
        "tq_0123456789abcdef_",
        "tq_0123456789abcdef_short",
        "tq_0123456789ABCDEF_" + "a" * 43,
        "tq_0123456789abcdef_" + "a" * 44,
        "tq_0123456789abcdef_" + "a" * 42 + "=",
        "xx_0123456789abcdef_" + "a" * 43,
    ],
)
def test_anything_but_a_well_formed_token_has_no_key_id(token: str) -> None:
    assert api_key_id(token) is None


def test_a_created_key_authenticates_as_its_user_and_only_the_hash_is_stored() -> None:
    api, store, clock = keys()
    key, token = api.create("alice", ["team-a", "team-b"], by="ops")
    assert (key.user, key.groups, key.admin, key.created_at, key.created_by) == (
        "alice",
        frozenset({"team-a", "team-b"}),
        False,
        clock.now(),
        "ops",
    )
    found = store.find(key.key_id)
    assert found is not None
    assert found[1] == api_key_hash(token)
    assert token not in repr(found)
    assert token.split("_", 2)[2] not in repr(found)
    assert api.authenticate(token) == Principal("alice", frozenset({"team-a", "team-b"}))


def test_an_admin_key_authenticates_as_an_admin() -> None:
    api, _, _ = keys()
    _, token = api.create("root", [], admin=True)
    principal = api.authenticate(token)
    assert principal is not None
    assert principal.admin
    assert principal.can_see("any-group")


def test_a_wrong_secret_an_unknown_id_or_a_revoked_key_authenticates_nobody() -> None:
    api, _, clock = keys()
    key, token = api.create("alice", ["team-a"])
    other_secret = api_key_token(key.key_id, new_secret())
    unknown_id = api_key_token(new_key_id(), token.split("_", 2)[2])
    assert api.authenticate(other_secret) is None
    assert api.authenticate(unknown_id) is None
    clock.advance(5)
    revoked = api.revoke(key.key_id)
    assert revoked is not None
    assert revoked.revoked_at == clock.now()
    assert api.authenticate(token) is None


def test_revoking_twice_keeps_the_first_time_and_an_unknown_key_is_none() -> None:
    api, _, clock = keys()
    key, _ = api.create("alice", ["team-a"])
    first = api.revoke(key.key_id)
    clock.advance(60)
    again = api.revoke(key.key_id)
    assert first is not None
    assert again is not None
    assert again.revoked_at == first.revoked_at
    assert api.revoke("0123456789abcdef") is None


def test_keys_are_listed_oldest_first() -> None:
    api, _, clock = keys()
    first, _ = api.create("alice", ["team-a"])
    clock.advance(1)
    second, _ = api.create("bob", ["team-b"])
    assert [key.key_id for key in api.all()] == [first.key_id, second.key_id]
