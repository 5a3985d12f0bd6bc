"""The task-type catalog (pools, defaults, payload schemas) and each pool's queues, on the emulator; the catalog's
cases also run against the in-memory fake (one contract for both)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from tqcore.activity import Activity
from tqcore.adapters import aws
from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.registry import DynamoRegistry
from tqcore.adapters.sqs.dead_letters import SqsDeadLetters
from tqcore.adapters.sqs.task_queue import SqsTaskQueue
from tqcore.bootstrap import bootstrap
from tqcore.clock import new_task_id
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Priority
from tqcore.domain.task import Task
from tqcore.errors import TypeServedElsewhere
from tqcore.ports import LiveInstance, Registry, TypeInfo
from tqcore.settings import CoreSettings
from tqcore.testing import InMemoryRegistry

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SCHEMA = {"type": "object", "properties": {"width": {"type": "integer"}}, "required": ["width"]}


@pytest.fixture(params=["dynamodb", "in-memory"])
def registry(request: pytest.FixtureRequest, settings: CoreSettings) -> Registry:
    if request.param == "in-memory":
        return InMemoryRegistry()
    return DynamoRegistry(aws.client(settings, "dynamodb"), settings)


def test_a_type_is_recorded_with_its_pool_defaults_schema_and_spec(registry: Registry) -> None:
    thumb = TypeInfo("thumb", "media", defaults={"retry": {"max_retries": 2}, "timeout_s": 60}, payload_schema=SCHEMA)
    registry.register_types([thumb, TypeInfo("script", spec='{"echo": {}}')], by="host:1")
    registry.register_types(["echo"], by="host:2", specs={})
    types = registry.task_types()
    assert set(types) == {"thumb", "script", "echo"}
    assert (types["thumb"].pool, dict(types["thumb"].defaults), types["thumb"].payload_schema) == (
        "media",
        {"retry": {"max_retries": 2}, "timeout_s": 60},
        SCHEMA,
    )
    assert (types["script"].pool, types["script"].spec, types["script"].payload_schema) == (
        "default",
        '{"echo": {}}',
        None,
    )
    assert (types["echo"].pool, dict(types["echo"].defaults), types["echo"].registered_by) == ("default", {}, "host:2")


def test_a_type_a_live_executor_of_another_pool_registered_is_refused(registry: Registry) -> None:
    registry.register_types([TypeInfo("thumb", "a")], by="host:1", alive=[])
    with pytest.raises(TypeServedElsewhere, match="served by pool 'a'"):
        registry.register_types([TypeInfo("thumb", "b")], by="host:2", alive=["host:1", "host:2"])
    assert registry.task_types()["thumb"].pool == "a"
    # Its own pool registers it again; another pool takes it over once its executor is gone
    registry.register_types([TypeInfo("thumb", "a", defaults={"timeout_s": 5})], by="host:3", alive=["host:1"])
    registry.register_types([TypeInfo("thumb", "b")], by="host:2", alive=["host:1", "host:2"])
    assert (registry.task_types()["thumb"].pool, registry.task_types()["thumb"].registered_by) == ("b", "host:2")


def test_a_refused_registration_registers_none_of_its_types(registry: Registry) -> None:
    # Given pool a's live executor serving y
    registry.register_types([TypeInfo("y", "a")], by="host:1", alive=[])
    # When an executor of pool b that serves x and y starts, it is refused because of y
    with pytest.raises(TypeServedElsewhere):
        registry.register_types([TypeInfo("x", "b"), TypeInfo("y", "b")], by="host:2", alive=["host:1", "host:2"])
    # Then x was not moved into pool b (whose executor does not run), nor y
    assert set(registry.task_types()) == {"y"}
    assert registry.task_types()["y"].pool == "a"


def test_each_pools_tasks_go_to_its_own_queues_and_dead_letter_queues(settings: CoreSettings) -> None:
    bootstrap(settings, ["media"])
    sqs = aws.client(settings, "sqs")
    queue = SqsTaskQueue(sqs, settings)
    task = queued("high", pool="media")
    queue.send(task)
    queue.send_batch([task, queued("low")])  # the first deduplicated by SQS, the second to the default pool
    queue.dead_letter(task)
    depths = {(d.pool, d.priority): (d.name, d.depth, d.dlq_depth) for d in queue.depths(["default", "media"])}
    assert depths[("media", Priority.HIGH)] == (f"{settings.prefix}-media-high.fifo", 1, 1)
    assert depths[("default", Priority.HIGH)] == (f"{settings.prefix}-high.fifo", 0, 0)
    assert depths[("default", Priority.LOW)][1] == 1
    assert len(depths) == 6
    letters = SqsDeadLetters(sqs, settings).receive(Priority.HIGH, hide_s=30, pool="media")
    assert [(letter.task_id, letter.pool, letter.record) for letter in letters] == [(task.id, "media", True)]
    assert SqsDeadLetters(sqs, settings).receive(Priority.HIGH, hide_s=30) == []


def test_bootstrap_creates_each_named_pools_queues_linked_to_their_dead_letter_queues(
    settings: CoreSettings, sqs: Any
) -> None:
    bootstrap(settings, ["b"])
    for priority in Priority:
        url = sqs.get_queue_url(QueueName=settings.queue_name(priority, "b"))["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert settings.dlq_name(priority, "b").removesuffix(".fifo") in attributes["RedrivePolicy"]
        assert attributes["FifoQueue"] == "true"


def queued(priority: str, pool: str = "default") -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": "g", "priority": priority})
    return Task.submit(
        task_id=new_task_id(), owner="u", now=NOW, submitted={}, pool=pool, **cmd.task_fields()
    ).committed()


def test_a_catalog_item_written_before_pools_is_a_default_pool_type_without_defaults(settings: CoreSettings) -> None:
    ddb = aws.client(settings, "dynamodb")
    item = {"PK": {"S": "CATALOG"}, "SK": {"S": "TYPE#old"}, "registered_by": {"S": "h:1"}, "registered_at": {"N": "1"}}
    ddb.put_item(TableName=settings.table_name, Item=item)
    registry = DynamoRegistry(ddb, settings)
    old = registry.task_types()["old"]
    assert (old.pool, dict(old.defaults), old.payload_schema, old.spec) == ("default", {}, None, None)
    # An executor of another pool takes it over once h:1 is gone
    registry.register_types([TypeInfo("old", "b")], by="h:2", alive=["h:2"])
    assert registry.task_types()["old"].pool == "b"


def test_a_heartbeat_carries_the_instances_activity_and_one_without_any_reads_as_none(registry: Registry) -> None:
    # Given an executor beating with its activity, then again with newer activity; a gateway beating with none
    first = Activity(minute=29_000_000, succeeded=(1, 2), pool="media")
    newer = Activity(minute=29_000_001, succeeded=(1, 2, 3), failed=(0, 0, 1), lag_s=(0.5,), pass_at=1.5, pool="media")
    registry.heartbeat("executor", "host:1", ttl_s=30, activity=first)
    registry.heartbeat("executor", "host:1", ttl_s=30, activity=newer)
    registry.heartbeat("gateway", "host:2", ttl_s=30)
    registry.heartbeat("scheduler", "host:3", ttl_s=30, activity=first)
    registry.leave("scheduler", "host:3")
    # When the live instances are read
    # Then each carries what its last beat carried (none for the gateway), and alive() agrees with them
    assert registry.instances() == [
        LiveInstance("executor", "host:1", newer),
        LiveInstance("gateway", "host:2", None),
    ]
    assert registry.alive() == {"executor": ["host:1"], "gateway": ["host:2"]}


def test_a_presence_item_written_before_heartbeats_carried_activity_is_read_as_alive_without_any(
    settings: CoreSettings,
) -> None:
    # Given a presence item as an older release wrote it (no activity attribute), and one whose activity is garbage
    ddb = aws.client(settings, "dynamodb")
    until = str(int(time.time()) + 30)
    for sk, extra in (("executor#old:1", {}), ("executor#odd:2", {"activity": {"S": "{not json"}})):
        item = {"PK": {"S": keys.PRESENCE_PK}, "SK": {"S": sk}, "alive_until": {"N": until}, **extra}
        ddb.put_item(TableName=settings.table_name, Item=item)
    # When the registry reads the live instances
    found = DynamoRegistry(ddb, settings).instances()
    # Then both are alive, their activity unknown
    assert found == [LiveInstance("executor", "odd:2", None), LiveInstance("executor", "old:1", None)]
