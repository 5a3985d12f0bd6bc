"""A task's history read a page at a time, against the real emulator and the in-memory fake (one contract):
events forward after a seq and backward before one, each a bounded key-range read, and runs paged newest first
from them exactly as the projection of the whole history."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tqcore.adapters.dynamodb import keys
from tqcore.adapters.dynamodb.task_store import DynamoTaskStore
from tqcore.clock import new_task_id
from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import ErrorInfo, Event, EventType
from tqcore.domain.requests import EventPageQuery, PageQuery
from tqcore.domain.runs import project_runs, run_to_dict
from tqcore.domain.task import Task
from tqcore.ports import TaskStore
from tqcore.usecases.management import TaskHistory
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ALICE = Principal("alice", frozenset({"team-a"}))
WORKER = "host-a:1"


def retried_task(store: TaskStore, attempts: int) -> Task:
    """A task stored after ``attempts`` failed attempts (claimed, failed, retry scheduled, queued each)."""
    cmd = SubmitTask.model_validate({"type": "echo", "group": "team-a", "retry": {"max_retries": attempts}})
    task = Task.submit(
        task_id=new_task_id(), owner="alice", now=NOW, submitted=cmd.model_dump(mode="json"), **cmd.task_fields()
    )
    store.create(task)
    task = task.committed()
    at = NOW
    for attempt in range(1, attempts + 1):
        at += timedelta(seconds=10)
        if attempt > 1:
            task = mutate(store, task, lambda t, now=at: t.promote(t.next_run_at or now))
        task = mutate(store, task, lambda t, n=attempt, now=at: t.claim(n, WORKER, now, 30))
        task = mutate(
            store, task, lambda t, n=attempt, now=at: t.fail(n, WORKER, ErrorInfo("E", "boom"), now, jitter=0.0)
        )
    return task


def seqs(events: list[Event]) -> list[int]:
    return [event.seq for event in events]


def test_events_read_forward_after_a_seq_and_backward_before_one(store: TaskStore) -> None:
    task = retried_task(store, 4)
    version = store.get(task.id).version
    every = list(range(1, version + 1))
    assert seqs(store.events(task.id)) == every
    # Forward: after any seq, at most limit, oldest first
    assert seqs(store.events(task.id, after_seq=3, limit=4)) == [4, 5, 6, 7]
    assert seqs(store.events(task.id, after_seq=version - 2, limit=10)) == every[-2:]
    assert store.events(task.id, after_seq=version, limit=5) == []
    assert seqs(store.events(task.id, after_seq=0, limit=1)) == [1]
    # Backward: before any seq, at most limit, newest first
    assert seqs(store.events_before(task.id, version + 1, 3)) == every[::-1][:3]
    assert seqs(store.events_before(task.id, 5, 100)) == [4, 3, 2, 1]
    assert store.events_before(task.id, 1, 10) == []
    assert seqs(store.events_before(task.id, 10**12, 2)) == every[::-1][:2]
    # A task without events (or none at all) reads nothing either way
    assert store.events("no-such-task", after_seq=0, limit=5) == []
    assert store.events_before("no-such-task", 100, 5) == []


def test_history_pages_match_the_whole_history(store: TaskStore) -> None:
    # Given a task that failed six attempts
    task = retried_task(store, 6)
    history = TaskHistory(store)
    whole = store.events(task.id)
    # When its events are read 5 at a time and its runs one at a time
    events: list[Event] = []
    query = EventPageQuery(limit=5)
    while True:
        page = history.events(task.id, ALICE, query)
        events += page.items
        if page.next_cursor is None:
            break
        query = EventPageQuery(limit=5, cursor=page.next_cursor)
    runs: list[dict[str, Any]] = []
    runs_query = PageQuery(limit=1)
    while True:
        run_page = history.runs(task.id, ALICE, runs_query)
        runs += [run_to_dict(run) for run in run_page.items]
        if run_page.next_cursor is None:
            break
        runs_query = PageQuery(limit=1, cursor=run_page.next_cursor)
    # Then they are the whole history and its projection, in order
    assert events == whole
    assert runs == [run_to_dict(run) for run in project_runs(whole)]
    assert [run["attempt"] for run in runs] == [6, 5, 4, 3, 2, 1]


def test_events_span_history_partitions_both_ways(store: TaskStore) -> None:
    # Given a task with more events than one history partition holds (a repeating task's long life)
    task = retried_task(store, 2)
    task = store.get(task.id)
    at = NOW + timedelta(minutes=5)
    for first in range(task.version + 1, 2 * keys.HISTORY_BUCKET + 40, 90):
        chunk = [Event(seq, EventType.UPDATED, at, "alice", {}) for seq in range(first, first + 90)]
        task = replace(task, version=chunk[-1].seq, pending_events=chunk)
        store.commit(task)
        task = replace(task, pending_events=[])
    version = store.get(task.id).version
    every = list(range(1, version + 1))
    assert version > 2 * keys.HISTORY_BUCKET
    # Then reads forward and backward cross the partitions' bounds without a gap
    assert seqs(store.events(task.id)) == every
    edge = keys.HISTORY_BUCKET
    assert seqs(store.events(task.id, after_seq=edge - 3, limit=6)) == every[edge - 3 : edge + 3]
    assert seqs(store.events(task.id, after_seq=5, limit=600)) == every[5:605]
    assert seqs(store.events_before(task.id, edge + 3, 6)) == every[edge - 4 : edge + 2][::-1]
    assert seqs(store.events_before(task.id, version + 1, 600)) == every[::-1][:600]
    assert seqs(store.events_before(task.id, 10**9, 3)) == every[::-1][:3]


def test_a_read_asks_dynamodb_for_no_more_items_than_the_page(dynamo_store: DynamoTaskStore) -> None:
    task = retried_task(dynamo_store, 6)
    asked: list[dict[str, Any]] = []
    client = dynamo_store._db.client
    client.meta.events.register("provide-client-params.dynamodb.Query", lambda params, **_: asked.append(params))
    dynamo_store.events(task.id, after_seq=2, limit=3)
    dynamo_store.events_before(task.id, 10, 4)
    assert [(q["Limit"], q["ScanIndexForward"]) for q in asked] == [(3, True), (4, False)]
