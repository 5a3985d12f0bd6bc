"""``tq.Client`` and ``tq.AsyncClient`` against a real stack (gunicorn, executors, the emulator): issue 17's Python
acceptance — 500 tasks through one ``submit_many``, ``wait``, ``stream`` in order with progress, and asyncio."""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import tq
from tests.conftest import TOKENS, executions, running_stack
from tq.models import Event, ProgressEvent
from tq.retries import Retries
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

#: A task type that reports progress, so a stream has some to show.
STEPS = """
import time

from tq import TaskContext, handler


@handler("client.steps")
def steps(ctx: TaskContext) -> dict:
    ctx.progress(0.5, "half way")
    time.sleep(1.5)  # the executor sends a report at most about once a second: let this one go out
    return {"steps": 2}
"""


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose executors also load ``client.steps``."""
    modules = tmp_path_factory.mktemp("handlers")
    (modules / "client_steps.py").write_text(STEPS)
    env = {
        "TQ_HANDLER_MODULES": "tq_executor.demo,client_steps",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")])),
    }
    with running_stack(emulator, Path(tmp_path_factory.mktemp("stack")), env=env) as started:
        yield started


@pytest.fixture
def client(stack: Stack) -> Iterator[tq.Client]:
    with tq.Client(stack.url, TOKENS["alice"]) as made:
        yield made


def test_500_tasks_through_one_submit_many_all_succeed_once(stack: Stack, client: tq.Client) -> None:
    items = client.submit_many({"type": "echo", "group": "team-a", "payload": {"n": n}} for n in range(500))
    assert [item.status for item in items] == [201] * 500
    ids = [item.task.id for item in items if item.task is not None]
    done = [client.wait(task_id, timeout_s=60) for task_id in ids]
    assert [(task.status, task.result) for task in done] == [("succeeded", {"n": n}) for n in range(500)]
    ran = Counter(task_id for task_id, _ in executions(stack))
    assert [ran[task_id] for task_id in ids] == [1] * 500


def test_wait_returns_the_finished_task(client: tq.Client) -> None:
    task = client.submit("echo", "team-a", {"x": 1})
    done = client.wait(task.id)
    assert (done.id, done.status, done.result, done.ended) == (task.id, "succeeded", {"x": 1}, True)


def test_wait_with_a_timeout_returns_the_task_as_it_is(client: tq.Client) -> None:
    task = client.submit("sleep", "team-a", {"seconds": 3})
    started = time.monotonic()
    waited = client.wait(task.id, timeout_s=1)
    assert 0.9 < time.monotonic() - started < 10  # about 1 s; generous, as its lane runs beside others
    assert waited.status in {"queued", "running"}
    # and without one, until it has ended (so no task is left running when the stack stops)
    assert (client.wait(task.id).status, client.get(task.id).result) == ("succeeded", {"slept": 3})


def test_stream_yields_claimed_to_succeeded_in_order_with_progress(client: tq.Client) -> None:
    task = client.submit("client.steps", "team-a")
    streamed = list(client.stream(task.id))
    kinds = [e.type for e in streamed]
    assert kinds[:2] == ["submitted", "queued"]
    assert kinds[-1] == "succeeded"
    assert kinds.index("claimed") < kinds.index("progress") < kinds.index("succeeded")
    events = [e for e in streamed if isinstance(e, Event)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))  # every event, once, in order
    assert [e.type for e in events] == [e.type for e in client.events(task.id)]
    progress = [e for e in streamed if isinstance(e, ProgressEvent)]
    assert progress[0].fraction == 0.5
    assert progress[0].message == "half way"


def test_the_async_client_does_the_same_in_asyncio(stack: Stack) -> None:
    async def main() -> None:
        async with tq.AsyncClient(stack.url, TOKENS["alice"]) as client:
            items = await client.submit_many([{"type": "echo", "group": "team-a", "payload": n} for n in range(20)])
            ids = [item.task.id for item in items if item.task is not None]
            done = await asyncio.gather(*(client.wait(task_id, timeout_s=30) for task_id in ids))
            assert [(t.status, t.result) for t in done] == [("succeeded", n) for n in range(20)]
            task = await client.submit("client.steps", "team-a")
            kinds = [event.type async for event in client.stream(task.id)]
            assert kinds.index("claimed") < kinds.index("progress") < kinds.index("succeeded") == len(kinds) - 1
            assert [t.id async for t in client.list(group="team-a", type="client.steps", status="succeeded")]

    loop = asyncio.new_event_loop()  # never the thread's loop (asyncio.run would unset it for later tests)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_another_group_task_is_not_found_and_a_dead_server_is_a_network_error(stack: Stack) -> None:
    with tq.Client(stack.url, TOKENS["bob"]) as bob:
        theirs = bob.submit("echo", "team-b")
    with tq.Client(stack.url, TOKENS["alice"]) as alice, pytest.raises(tq.ApiError) as hidden:
        next(iter(alice.stream(theirs.id)))
    assert hidden.value.status == 404
    with (
        tq.Client("http://127.0.0.1:9", "t", retries=Retries(attempts=2)) as nowhere,
        pytest.raises(tq.NetworkError) as unreachable,
    ):
        nowhere.get(theirs.id)
    assert unreachable.value.status is None
