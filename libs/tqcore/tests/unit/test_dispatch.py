"""Dispatch: the Dramatiq message that hands one attempt to an executor, and its SQS deduplication id."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import pytest

from tqcore.dispatch import MAX_INLINE_BYTES, Dispatch, actor_name
from tqcore.domain.codec import task_to_dict
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo, Priority, Status
from tqcore.domain.task import Task

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
WORKER = "host-a:101"
MESSAGE_KEYS = {"queue_name", "actor_name", "args", "kwargs", "options", "message_id", "message_timestamp"}


def queued(**body: Any) -> Task:
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", **body})
    return Task.submit(task_id="t-1", owner="alice", now=T0, submitted=cmd.model_dump(mode="json"), **cmd.task_fields())


def test_of_targets_the_next_attempt_of_this_version() -> None:
    task = queued(priority="high")
    dispatch = Dispatch.of(task)
    assert (dispatch.task_id, dispatch.attempt, dispatch.version, dispatch.priority) == ("t-1", 1, 2, Priority.HIGH)
    assert dispatch.task == task


def test_to_dict_from_dict_round_trips() -> None:
    dispatch = Dispatch.of(queued(payload={"n": [1, 2, 3]}))
    again = Dispatch.from_dict(json.loads(json.dumps(dispatch.to_dict())))
    assert again == dispatch
    assert Dispatch.from_dict({**dispatch.to_dict(), "task": None}).task is None


@pytest.mark.parametrize("priority", list(Priority))
def test_encoded_body_is_a_dramatiq_message_for_the_priority_actor(priority: Priority) -> None:
    dispatch = Dispatch.of(queued(priority=priority.value, payload={"text": "héllo ✓"}))
    body = dispatch.encode()
    raw = json.loads(body)
    assert set(raw) == MESSAGE_KEYS
    assert (raw["queue_name"], raw["actor_name"]) == (priority.value, f"run_{priority.value}")
    assert actor_name(priority) == raw["actor_name"]
    assert (raw["kwargs"], raw["options"]) == ({}, {})
    assert raw["args"] == [json.loads(json.dumps(dispatch.to_dict()))]
    uuid.UUID(raw["message_id"])
    assert isinstance(raw["message_timestamp"], int)
    assert raw["message_timestamp"] > 1_700_000_000_000  # milliseconds, not seconds

    message = dramatiq.Message.decode(body.encode())
    assert (message.queue_name, message.actor_name) == (priority.value, actor_name(priority))
    assert len(message.args) == 1
    assert Dispatch.from_dict(message.args[0]) == dispatch


def test_a_huge_payload_leaves_the_task_out_of_the_message() -> None:
    dispatch = Dispatch.of(queued(payload={"blob": "x" * (MAX_INLINE_BYTES + 10 * 1024)}))
    body = dispatch.encode()
    assert len(body.encode()) < 4096
    arg = dramatiq.Message.decode(body.encode()).args[0]
    assert arg["task"] is None
    assert Dispatch.from_dict(arg) == Dispatch("t-1", 1, 2, Priority.NORMAL, None, run=1, enqueue=dispatch.enqueue)


def test_the_inline_limit_counts_bytes_not_characters() -> None:
    # 110 Ki characters, but 220 KiB of UTF-8
    dispatch = Dispatch.of(queued(payload="é" * (110 * 1024)))
    assert json.loads(dispatch.encode())["args"][0]["task"] is None


def test_a_payload_that_fits_stays_in_the_message() -> None:
    dispatch = Dispatch.of(queued(payload="x" * (MAX_INLINE_BYTES - 8 * 1024)))
    body = dispatch.encode()
    assert len(body.encode()) <= MAX_INLINE_BYTES
    assert dispatch.task is not None
    assert json.loads(body)["args"][0]["task"] == json.loads(json.dumps(task_to_dict(dispatch.task)))


def test_deduplication_id_is_the_same_for_sends_of_the_same_version() -> None:
    # Given one enqueue, sent by the gateway and again (same version) after a crash before the send returned
    task = queued()
    first = Dispatch.of(task)
    second = Dispatch.of(copy.deepcopy(task))
    # Then SQS sees one message
    assert first.deduplication_id == second.deduplication_id
    assert first.deduplication_id.startswith("t-1.1.")
    assert json.loads(first.encode())["message_id"] != json.loads(second.encode())["message_id"]


def test_a_re_send_keeps_the_deduplication_id_of_its_enqueue() -> None:
    # Given a queued task nobody claimed, re-sent twice by the reaper (each re-send is a new version)
    task = queued()
    first = Dispatch.of(task)
    task.resend(T0 + timedelta(seconds=30))
    task.resend(T0 + timedelta(seconds=90))
    again = Dispatch.of(task)
    # Then the re-sends are the same enqueue to SQS: dropped if the first message got there, delivered if not
    assert again.version == first.version + 2
    assert again.deduplication_id == first.deduplication_id


def test_a_re_send_after_sqs_dead_lettered_the_message_is_a_new_message() -> None:
    # Given a queued task whose message SQS moved to its dead-letter queue (it is gone from the queue)
    task = queued()
    first = Dispatch.of(task)
    task.poisoned(1, 5, T0 + timedelta(seconds=60), strikes_allowed=3)
    assert task.status is Status.QUEUED
    # Then the re-send is not swallowed as a duplicate of the message SQS no longer holds
    assert Dispatch.of(task).deduplication_id != first.deduplication_id


def test_the_enqueue_travels_in_the_message() -> None:
    dispatch = Dispatch.of(queued())
    assert dispatch.enqueue is not None
    decoded = Dispatch.from_dict(json.loads(dispatch.encode())["args"][0])
    assert decoded.deduplication_id == dispatch.deduplication_id


def test_deduplication_id_differs_after_a_redrive() -> None:
    # Given the dispatch of attempt 1
    task = queued(retry={"max_retries": 0})
    before = Dispatch.of(task)
    # When attempt 1 fails for good and the task is redriven
    task.claim(1, WORKER, T0, 30)
    task.fail(1, WORKER, ErrorInfo("E", "x"), T0 + timedelta(seconds=1), jitter=0.0)
    task.redrive("alice", T0 + timedelta(seconds=2))
    assert task.status is Status.QUEUED
    after = Dispatch.of(task)
    # Then it is attempt 1 again, but not a duplicate SQS would swallow
    assert after.attempt == before.attempt == 1
    assert after.version > before.version
    assert after.deduplication_id != before.deduplication_id


def test_deduplication_id_differs_for_the_next_attempt() -> None:
    task = queued()
    first = Dispatch.of(task)
    task.claim(1, WORKER, T0, 30)
    task.fail(1, WORKER, ErrorInfo("E", "x"), T0 + timedelta(seconds=1), jitter=0.0)
    task.promote(T0 + timedelta(seconds=5))
    second = Dispatch.of(task)
    assert second.attempt == 2
    assert second.deduplication_id != first.deduplication_id
