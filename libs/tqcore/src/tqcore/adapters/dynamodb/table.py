"""One DynamoDB table: calls that map throttling and connection failures to ``StoreUnavailable``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from tqcore.errors import StoreUnavailable

#: Error codes that mean "try again later", not "your request is wrong".
UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        # The same, as reason codes of a cancelled TransactWriteItems (botocore does not retry those).
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
    }
)


def unavailable(error: Exception) -> StoreUnavailable:
    """Wrap a throttle or connection failure so callers can answer 503."""
    return StoreUnavailable(f"DynamoDB is unavailable: {error}")


class Table:
    """A named table on a client."""

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def call(self, operation: str, **kwargs: Any) -> Any:
        """Call ``operation`` on the client."""
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in UNAVAILABLE_CODES:
                raise unavailable(error) from error
            raise
        except BotoCoreError as error:
            raise unavailable(error) from error

    def conditional(self, operation: str, **kwargs: Any) -> Any | None:
        """:meth:`call` for a write with a ``ConditionExpression``: ``None`` when the condition does not hold."""
        try:
            return self.call(operation, **kwargs)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise

    def query_pages(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Each page of a query's answer, following ``LastEvaluatedKey`` as long as the caller reads on."""
        start: dict[str, Any] | None = None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            page: dict[str, Any] = self.call("query", TableName=self.name, **kwargs, **extra)
            yield page
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def query_all(self, **kwargs: Any) -> list[dict[str, Any]]:
        """Every item a query matches."""
        return [item for page in self.query_pages(**kwargs) for item in page.get("Items", [])]

    def count(self, cap: int, **kwargs: Any) -> int:
        """How many items a query matches (``Select=COUNT``), reading no further once ``cap`` is reached."""
        found = 0
        for page in self.query_pages(Select="COUNT", **kwargs):
            found += int(page.get("Count", 0))
            if found >= cap:
                return cap
        return found
