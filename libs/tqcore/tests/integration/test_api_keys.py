"""The API key store against the emulator (and the in-memory fake, same contract): only hashes are stored."""

from __future__ import annotations

from typing import Any

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.api_keys import DynamoApiKeyStore
from tqcore.api_keys import ApiKeys
from tqcore.domain.access import ApiKey, Principal, api_key_hash, api_key_token
from tqcore.ports import ApiKeyStore
from tqcore.settings import CoreSettings
from tqcore.testing import FixedClock, InMemoryApiKeyStore

pytestmark = pytest.mark.integration


@pytest.fixture(params=["dynamodb", "in-memory"])
def key_store(request: pytest.FixtureRequest, settings: CoreSettings) -> ApiKeyStore:
    if request.param == "in-memory":
        return InMemoryApiKeyStore()
    return DynamoApiKeyStore(aws.client(settings, "dynamodb"), settings)


def test_a_key_is_created_found_by_its_token_and_refused_once_revoked(key_store: ApiKeyStore) -> None:
    clock = FixedClock()
    keys = ApiKeys(key_store, clock)
    # Given a key for alice and an admin key
    key, token = keys.create("alice", ["team-a", "team-b"], by="ops")
    _, admin_token = keys.create("root", [], admin=True)
    # Then each token authenticates its principal
    assert keys.authenticate(token) == Principal("alice", frozenset({"team-a", "team-b"}))
    assert keys.authenticate(admin_token) == Principal("root", frozenset(), admin=True)
    # and the stored record round-trips, with the token's hash
    found = key_store.find(key.key_id)
    assert found == (key, api_key_hash(token))
    # but the right id with a wrong secret does not
    assert keys.authenticate(api_key_token(key.key_id, "A" * 43)) is None
    # When alice's key is revoked
    clock.advance(3)
    revoked = keys.revoke(key.key_id)
    # Then it is marked so (a second revocation keeps the first time) and no longer authenticates
    assert revoked is not None
    assert revoked.revoked_at == clock.now()
    clock.advance(3)
    again = keys.revoke(key.key_id)
    assert again is not None
    assert again.revoked_at == revoked.revoked_at
    assert keys.authenticate(token) is None
    assert keys.authenticate(admin_token) is not None
    assert keys.revoke("0123456789abcdef") is None


def test_a_key_id_is_never_overwritten(key_store: ApiKeyStore) -> None:
    keys = ApiKeys(key_store, FixedClock(), new_id=lambda: "00000000000000aa")
    keys.create("alice", ["team-a"])
    with pytest.raises(ValueError, match="already exists"):
        keys.create("mallory", ["team-a"], admin=True)
    found = key_store.find("00000000000000aa")
    assert found is not None
    assert found[0].user == "alice"


def test_the_listing_shows_every_key_without_secret_or_hash(key_store: ApiKeyStore) -> None:
    clock = FixedClock()
    keys = ApiKeys(key_store, clock)
    made = []
    for user in ("alice", "bob"):
        made.append(keys.create(user, ["team-a"]))
        clock.advance(1)
    keys.revoke(made[0][0].key_id)
    listed = keys.all()
    assert [k.user for k in listed] == ["alice", "bob"]
    assert listed[0].revoked_at is not None
    assert listed[1] == made[1][0]
    for _, token in made:
        assert all(token.split("_", 2)[2] not in repr(k) and api_key_hash(token) not in repr(k) for k in listed)


def test_the_table_item_holds_the_hash_and_never_the_token(settings: CoreSettings) -> None:
    ddb: Any = aws.client(settings, "dynamodb")
    keys = ApiKeys(DynamoApiKeyStore(ddb, settings), FixedClock())
    key, token = keys.create("alice", ["team-a"])
    items = ddb.scan(TableName=settings.table_name)["Items"]
    stored = [item for item in items if item.get("key_id", {}).get("S") == key.key_id]
    assert len(stored) == 1
    assert stored[0]["token_sha256"]["S"] == api_key_hash(token)
    assert token.split("_", 2)[2] not in repr(items)
    assert isinstance(key, ApiKey)
