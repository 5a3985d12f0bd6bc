"""One-off backfills: index keys older code did not write, given once per table and recorded in it.

* the sweep keys: a waiting snapshot last written before the scheduler's sweep existed carries the ``due`` index
  keys but no ``REAP#D`` keys, and a task the old scheduler stranded is never written again: only this puts it
  where the sweep looks;
* the schedule keys: a repeating task (or a one-off ``at`` task) waiting since before the ``sched`` index existed
  is on no schedules page until its next write (a one-off task's: when its time comes); this files it there.

Both walk the sparse ``due`` index (it holds only waiting tasks, not the events and ended tasks a table scan would
read). The scheduler runs them a page per pass, one after the other (``tq_scheduler``); the ``MIGRATION`` item each
puts at the end makes every later run one ``GetItem``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tqcore.adapters.dynamodb import deadlines, keys
from tqcore.adapters.dynamodb.table import Table
from tqcore.domain.codec import parse_ts, task_from_dict
from tqcore.settings import CoreSettings

log = logging.getLogger(__name__)

#: The ``MIGRATION`` items' sort keys: the names of the backfills.
SWEEP_KEYS = "reap-sweep-keys"
SCHEDULE_KEYS = "sched-keys"
#: Index items a step reads (so at most this many conditional updates per step).
PAGE_SIZE = 100


class DueIndexBackfill:
    """A backfill over the ``due`` index: a page of the items ``FILTER`` selects per step, each given its keys by
    ``give`` (a conditional update), then a record that it is done."""

    #: Its ``MIGRATION`` item's sort key.
    NAME = ""
    #: Which ``due`` index items it reads (a filter expression).
    FILTER = ""
    #: What it reads of each.
    PROJECTION = ""

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
            FilterExpression=self.FILTER,
            ProjectionExpression=self.PROJECTION,
            Limit=self._page_size,
            **({"ExclusiveStartKey": self._cursor} if self._cursor else {}),
        )
        self._given([item for item in page.get("Items", []) if self.give(item)])
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

    def give(self, item: dict[str, Any]) -> bool:
        """Give one snapshot (as read) its keys, unless it changed since; whether it was given them."""
        raise NotImplementedError

    def _set_keys(
        self,
        key: dict[str, Any],
        version: dict[str, str],
        names: tuple[str, str],
        attrs: dict[str, str],
        condition: str = "",
        values: dict[str, Any] | None = None,
    ) -> bool:
        """Set an index's two keys (``names``, valued from ``attrs``) on a snapshot still at ``version`` without
        them (and meeting ``condition``): a commit since wrote its own keys, which this must not touch."""
        pk, sk = names
        answer = self._db.conditional(
            "update_item",
            TableName=self._db.name,
            Key=key,
            UpdateExpression=f"SET {pk} = :pk, {sk} = :sk",
            ConditionExpression=" AND ".join(
                ["version = :v", *([condition] if condition else []), f"attribute_not_exists({pk})"]
            ),
            ExpressionAttributeValues={
                ":pk": {"S": attrs[pk]},
                ":sk": {"S": attrs[sk]},
                ":v": version,
                **(values or {}),
            },
        )
        return answer is not None

    def _given(self, items: list[dict[str, Any]]) -> None:
        """After a page: ``items`` were given their keys."""
        self.updated += len(items)

    def _key(self) -> dict[str, Any]:
        return {"PK": {"S": keys.MIGRATION_PK}, "SK": {"S": self.NAME}}

    def _recorded(self) -> bool:
        answer = self._db.call("get_item", TableName=self._db.name, Key=self._key(), ConsistentRead=True)
        return "Item" in answer

    def _record(self) -> None:
        done_at = datetime.now(UTC).isoformat(timespec="seconds")
        item = {**self._key(), "done_at": {"S": done_at}, "updated": {"N": str(self.updated)}}
        self._db.call("put_item", TableName=self._db.name, Item=item)
        log.info("backfill %s done: %d waiting tasks given their keys; recorded as done", self.NAME, self.updated)


class SweepKeysBackfill(DueIndexBackfill):
    """Gives every snapshot with ``due`` keys and no ``reap`` keys its ``REAP#D`` keys."""

    NAME = SWEEP_KEYS
    FILTER = "attribute_not_exists(reap_pk)"
    PROJECTION = "PK, SK, due_sk, version"

    def _given(self, items: list[dict[str, Any]]) -> None:
        super()._given(items)
        if items:  # deadlines filed behind the sweep's mark (they are old): the mark goes back to the oldest
            oldest = parse_ts(min(item["due_sk"]["S"] for item in items).partition("#")[0])
            assert oldest is not None
            deadlines.lower_mark(self._db, keys.SWEEP, oldest)

    def give(self, item: dict[str, Any]) -> bool:
        """:meth:`give_sweep_keys`."""
        return self.give_sweep_keys(item)

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
        return self._set_keys(key, version, ("reap_pk", "reap_sk"), attrs, "due_sk = :due", {":due": {"S": due_sk}})


class ScheduleKeysBackfill(DueIndexBackfill):
    """Gives every waiting snapshot that belongs on the schedules page (``keys.on_schedule``) its ``sched`` keys."""

    NAME = SCHEDULE_KEYS
    FILTER = "attribute_not_exists(sch_pk)"
    PROJECTION = "PK, SK, doc, version"

    def give(self, item: dict[str, Any]) -> bool:
        """Add the ``sched`` keys to one snapshot (``PK``, ``SK``, ``doc``, ``version`` as read) if its task is a
        schedule, unless it changed since (a commit in between wrote its own keys)."""
        try:
            task = task_from_dict(json.loads(item["doc"]["S"]))
            key, version = {"PK": item["PK"], "SK": item["SK"]}, item["version"]
        except (KeyError, ValueError, TypeError):
            log.error("skipping an undecodable snapshot: %s", item.get("PK"))
            return False
        if not keys.on_schedule(task):
            return False
        attrs = {"sch_pk": keys.schedule_pk(task.group), "sch_sk": task.id}
        return self._set_keys(key, version, ("sch_pk", "sch_sk"), attrs)


def in_turn(*steps: Callable[[], bool]) -> Callable[[], bool]:
    """One backfill step function running ``steps`` (each a backfill's ``step``) one after the other: ``True``
    once the last is done."""
    pending = list(steps)

    def step() -> bool:
        while pending:
            if not pending[0]():
                return False
            pending.pop(0)
        return True

    return step
