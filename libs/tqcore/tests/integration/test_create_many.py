"""``DynamoTaskStore.create_many`` against a real emulator: full transactions, each task on its own."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.errors import TaskTooLarge
from tqcore.domain.task import Task
from tqcore.ports import DuplicateRequest, IdempotencyRecord
from tqcore.settings import CoreSettings

pytestmark = pytest.mark.integration


def new_task(payload: object = None) -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", "payload": payload or {}})
    fields = cmd.task_fields()
    return Task.submit(task_id=new_task_id(), owner="alice", now=datetime.now(UTC), submitted={}, **fields)


def keyed(task: Task, key: str, fingerprint: str = "f") -> tuple[Task, IdempotencyRecord]:
    return task, IdempotencyRecord("team-a", key, fingerprint, task.id)


def test_a_batch_goes_in_full_transactions_and_a_failed_condition_fails_only_its_own_task(
    settings: CoreSettings,
) -> None:
    # Given a store whose write calls are counted, and a key another submit took earlier
    client = aws.client(settings, "dynamodb")
    calls: Counter[str] = Counter()
    client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.update([model.name]))
    store = DynamoTaskStore(client, settings)
    earlier = new_task()
    store.create(*keyed(earlier, "taken"))
    calls.clear()
    # When 240 tasks are created at once: 120 without a key, 116 with their own, one with the taken key, one key
    # twice (the second in the same batch), and one task too large to store
    plain = [(new_task(), None) for _ in range(120)]
    own = [keyed(new_task(), f"k-{n}") for n in range(116)]
    twice = [keyed(new_task(), "twice"), keyed(new_task(), "twice")]
    huge = (new_task({"blob": "x" * 390_000}), None)
    batch: list[tuple[Task, IdempotencyRecord | None]] = [
        *plain[:60],
        keyed(new_task(), "taken"),
        twice[0],
        *own,
        huge,
        twice[1],
        *plain[60:],
    ]
    outcomes = store.create_many(batch)
    # Then every other task is created, each failed one carries its own reason
    failed = {n: outcome for n, outcome in enumerate(outcomes) if outcome is not None}
    taken, too_large, repeated = 60, 62 + len(own), 63 + len(own)
    assert set(failed) == {taken, too_large, repeated}
    assert isinstance(failed[taken], DuplicateRequest)
    assert failed[taken].record.task_id == earlier.id
    assert isinstance(failed[too_large], TaskTooLarge)
    second = failed[repeated]
    assert isinstance(second, DuplicateRequest)
    assert second.record.task_id == twice[0][0].id
    for n, (task, _) in enumerate(batch):
        if n not in failed:
            assert store.get(task.id).version == task.version
    # ... in full transactions: 358 items need 4 at 100 items, one more each for the refused and the repeated key
    print(f"\n240 creates: {dict(calls)}")
    assert sum(calls[op] for op in ("PutItem", "UpdateItem")) == 0
    assert calls["TransactWriteItems"] <= 7
