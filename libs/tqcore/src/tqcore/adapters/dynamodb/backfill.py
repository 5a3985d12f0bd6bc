"""One-off backfill: the sweep keys older code did not write, given once per table and recorded in it.

A waiting snapshot last written before the scheduler's sweep existed carries the ``due`` index keys but no
``REAP#D`` keys, and a task the old scheduler stranded is never written again: only this puts it where the sweep
looks. The scheduler runs it a page per pass (``tq_scheduler``); the ``MIGRATION`` item it puts at the end makes
every later run one ``GetItem``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from tqcore.adapters.dynamodb import deadlines, keys
from tqcore.adapters.dynamodb.table import Table
from tqcore.domain.codec import parse_ts
from tqcore.settings import CoreSettings

log = logging.getLogger(__name__)

#: The ``MIGRATION`` item's sort key: the name of this backfill.
SWEEP_KEYS = "reap-sweep-keys"
#: Index items a step reads (so at most this many conditional updates per step).
PAGE_SIZE = 100


class SweepKeysBackfill:
    """Gives every snapshot with ``due`` keys and no ``reap`` keys its ``REAP#D`` keys, a page of the sparse
    ``due`` index at a time (it holds only waiting tasks, not the events and ended tasks a table scan would
    read), then records itself done."""

    def __init__(self, client: Any, settings: CoreSettings, *, page_size: int = PAGE_SIZE) -> None:
        self._db = Table(client, settings.table_name)
        self._reap_shards = settings.reap_shards
        self._page_size = page_size
        self._cursor: dict[str, Any] | None = None
        self.done = False
        #: Snapshots given their keys by this instance.
        self.updated = 0

    def step(self) -> bool:
        """Backfill one page; ``True`` once the table is done (by this run, an earlier one or another replica)."""
        if self.done or self._recorded():
            self.done = True
            return True
        page = self._db.call(
            "scan",
            TableName=self._db.name,
            IndexName="due",
            FilterExpression="attribute_not_exists(reap_pk)",
            ProjectionExpression="PK, SK, due_sk, version",
            Limit=self._page_size,
            **({"ExclusiveStartKey": self._cursor} if self._cursor else {}),
        )
        given = [item["due_sk"]["S"] for item in page.get("Items", []) if self.give_sweep_keys(item)]
        self.updated += len(given)
        if given:  # deadlines filed behind the sweep's mark (they are old): the mark goes back to the oldest
            oldest = parse_ts(min(given).partition("#")[0])
            assert oldest is not None
            deadlines.lower_mark(self._db, keys.SWEEP, oldest)
        self._cursor = page.get("LastEvaluatedKey")
        if not self._cursor:
            self._record()
            self.done = True
        return self.done

    def run(self) -> int:
        """Every step until done; how many snapshots this run gave their keys."""
        while not self.step():
            pass
        return self.updated

    def give_sweep_keys(self, item: dict[str, Any]) -> bool:
        """Add the sweep keys to one snapshot (``PK``, ``SK``, ``due_sk``, ``version`` as read), unless it changed
        since: a commit in between wrote its own keys, and this update must not touch what it wrote."""
        try:
            due_sk = item["due_sk"]["S"]
            attrs = keys.sweep_index_attributes(due_sk.partition("#")[2], due_sk, self._reap_shards)
            key, version = {"PK": item["PK"], "SK": item["SK"]}, item["version"]
        except KeyError:
            log.error("skipping an index item without keys or version: %s", item.get("PK"))
            return False
        answer = self._db.conditional(
            "update_item",
            TableName=self._db.name,
            Key=key,
            UpdateExpression="SET reap_pk = :pk, reap_sk = :sk",
            ConditionExpression="version = :v AND due_sk = :due AND attribute_not_exists(reap_pk)",
            ExpressionAttributeValues={
                ":pk": {"S": attrs["reap_pk"]},
                ":sk": {"S": attrs["reap_sk"]},
                ":v": version,
                ":due": {"S": due_sk},
            },
        )
        return answer is not None

    def _key(self) -> dict[str, Any]:
        return {"PK": {"S": keys.MIGRATION_PK}, "SK": {"S": SWEEP_KEYS}}

    def _recorded(self) -> bool:
        answer = self._db.call("get_item", TableName=self._db.name, Key=self._key(), ConsistentRead=True)
        return "Item" in answer

    def _record(self) -> None:
        done_at = datetime.now(UTC).isoformat(timespec="seconds")
        item = {**self._key(), "done_at": {"S": done_at}, "updated": {"N": str(self.updated)}}
        self._db.call("put_item", TableName=self._db.name, Item=item)
        log.info("sweep keys backfilled: %d waiting tasks given REAP#D keys; recorded as done", self.updated)
