"""API key records in the single table: the key's metadata and the SHA-256 of its token, never the token."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.table import Table
from tqcore.domain.access import ApiKey
from tqcore.domain.codec import parse_ts, ts
from tqcore.settings import CoreSettings

#: What ``all()`` reads: everything but the token hash.
_PUBLIC_ATTRIBUTES = "key_id, #user, #groups, #admin, created_at, created_by, revoked_at"
_NAMES = {"#user": "user", "#groups": "groups", "#admin": "admin"}


class DynamoApiKeyStore:
    """API keys in the ``APIKEY`` partition of the tasks table."""

    def __init__(self, client: Any, settings: CoreSettings) -> None:
        self._db = Table(client, settings.table_name)
        self._table = settings.table_name

    def add(self, key: ApiKey, token_hash: str) -> None:
        """Store a new key; raises ``ValueError`` if the id is taken."""
        item = {**_key(key.key_id), **_to_item(key), "token_sha256": {"S": token_hash}}
        added = self._db.conditional(
            "put_item", TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(PK)"
        )
        if added is None:
            # botocore sends a put again when its answer was lost: the item found may be this very write.
            found = self.find(key.key_id)
            if found is None or found[1] != token_hash:
                raise ValueError(f"API key id {key.key_id} already exists")

    def find(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its token hash (a consistent read, so a revocation is seen at once)."""
        response = self._db.call("get_item", TableName=self._table, Key=_key(key_id), ConsistentRead=True)
        item = response.get("Item")
        return (_from_item(item), item["token_sha256"]["S"]) if item else None

    def all(self) -> list[ApiKey]:
        """Every key, oldest first, read without the hashes."""
        items = self._db.query_all(
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": keys.API_KEY_PK}},
            ProjectionExpression=_PUBLIC_ATTRIBUTES,
            ExpressionAttributeNames=_NAMES,
        )
        return sorted((_from_item(item) for item in items), key=lambda key: (key.created_at, key.key_id))

    def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        """Set ``revoked_at`` unless already set; ``None`` if there is no such key."""
        response = self._db.conditional(
            "update_item",
            TableName=self._table,
            Key=_key(key_id),
            UpdateExpression="SET revoked_at = if_not_exists(revoked_at, :at)",
            ConditionExpression="attribute_exists(PK)",
            ExpressionAttributeValues={":at": {"S": ts(at)}},
            ReturnValues="ALL_NEW",
        )
        return None if response is None else _from_item(response["Attributes"])


def _key(key_id: str) -> dict[str, Any]:
    return {"PK": {"S": keys.API_KEY_PK}, "SK": {"S": keys.api_key_sk(key_id)}}


def _to_item(key: ApiKey) -> dict[str, Any]:
    item: dict[str, Any] = {
        "key_id": {"S": key.key_id},
        "user": {"S": key.user},
        # A list, not a string set: a set may not be empty (an admin key may have no groups).
        "groups": {"L": [{"S": group} for group in sorted(key.groups)]},
        "admin": {"BOOL": key.admin},
        "created_at": {"S": ts(key.created_at)},
    }
    if key.created_by:
        item["created_by"] = {"S": key.created_by}
    if key.revoked_at:
        item["revoked_at"] = {"S": ts(key.revoked_at)}
    return item


def _from_item(item: dict[str, Any]) -> ApiKey:
    created_at = parse_ts(item["created_at"]["S"])
    assert created_at is not None  # always written
    return ApiKey(
        key_id=item["key_id"]["S"],
        user=item["user"]["S"],
        groups=frozenset(value["S"] for value in item["groups"]["L"]),
        admin=item["admin"]["BOOL"],
        created_at=created_at,
        created_by=item["created_by"]["S"] if "created_by" in item else None,
        revoked_at=parse_ts(item["revoked_at"]["S"]) if "revoked_at" in item else None,
    )
