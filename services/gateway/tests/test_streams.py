"""Waiting for a task (``?wait_s=``) and its event stream (SSE) over in-memory fakes: the watch's wake-ups, the
stream's framing and resumption, the bounds, and the wait slots."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import falcon.testing
import pytest
from pydantic import ValidationError

from tq import calls, follow
from tq_gateway import watch as watch_module
from tq_gateway.settings import GatewaySettings
from tq_gateway.streams import PING, EventStream, StreamTiming, event_frame, in_order, progress_frame
from tq_gateway.testing import client_over_fakes
from tq_gateway.waiting import NoSlot, Slots
from tq_gateway.watch import TaskWatch
from tqcore.domain.commands import SubmitTask
from tqcore.domain.model import Event, EventType, Progress, Status
from tqcore.domain.task import Task
from tqcore.errors import StoreUnavailable
from tqcore.queries import TaskStamp
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskQueries, InMemoryTaskStore
from tqcore.usecases.management import TaskHistory
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

ALICE = {"Authorization": "Bearer dev-alice"}
BOB = {"Authorization": "Bearer dev-bob"}
WORKER = "host-a:1"
#: Fast enough for tests: the watch looks every 50 ms.
FAST = {"watch_interval_s": 0.05, "stream_ping_s": 5, "stream_max_s": 10}


class Api:
    """A gateway over fakes whose watch polls quickly, and a way to move its tasks along."""

    def __init__(self, **settings: Any) -> None:
        self.store = InMemoryTaskStore()
        self.clock = FixedClock()
        self._ids = (f"t-{n}" for n in itertools.count(1))
        self.http = client_over_fakes(
            GatewaySettings(**{**FAST, **settings}),
            store=self.store,
            registry=InMemoryRegistry(["echo"]),
            clock=self.clock,
        )

    def task(self, group: str = "team-a") -> Task:
        cmd = SubmitTask.model_validate({"type": "echo", "group": group})
        task = Task.submit(
            task_id=next(self._ids), owner="alice", now=self.clock.now(), submitted=cmd.model_dump(mode="json"),
            **cmd.task_fields(),
        )  # fmt: skip
        self.store.create(task)
        return task.committed()

    def change(self, task: Task, change: Callable[[Task], None]) -> Task:
        self.clock.advance(1)
        return mutate(self.store, task, change)

    def claim(self, task: Task) -> Task:
        return self.change(task, lambda t: t.claim(1, WORKER, self.clock.now(), 30))

    def succeed(self, task: Task) -> Task:
        return self.change(task, lambda t: t.succeed(1, WORKER, {"ok": True}, self.clock.now()))

    def later(self, delay_s: float, action: Callable[[], object]) -> threading.Thread:
        """Run ``action`` in a thread after ``delay_s`` (while the test's request waits)."""

        def run() -> None:
            time.sleep(delay_s)
            action()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread

    def get(self, path: str, headers: dict[str, str] | None = None, **params: Any) -> falcon.testing.Result:
        return self.http.simulate_get(path, headers=headers or ALICE, params=params or None)


def messages(body: str) -> list[dict[str, str]]:
    """An SSE body as its messages: each a dict of its fields (a comment line as ``comment``)."""
    parsed = []
    for block in body.split("\n\n"):
        if not block:
            continue
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            fields[name or "comment"] = value.removeprefix(" ")
        parsed.append(fields)
    return parsed


def events_of(body: str) -> list[dict[str, str]]:
    return [m for m in messages(body) if "event" in m]


# ---------------------------------------------------------------------------------------------------- the watch
class Reads:
    """A stamp reader over a dict, recording each call's ids."""

    def __init__(self) -> None:
        self.stamps: dict[str, TaskStamp] = {}
        self.calls: list[list[str]] = []

    def __call__(self, ids: Sequence[str]) -> dict[str, TaskStamp]:
        self.calls.append(sorted(ids))
        return {i: self.stamps[i] for i in ids if i in self.stamps}


def test_the_watch_reads_every_watched_task_in_one_call_and_wakes_only_the_watchers_of_what_moved() -> None:
    # Given three watchers of task a and one of task b (the thread never polls on its own: a long interval)
    reads = Reads()
    reads.stamps = {"a": TaskStamp(1, Status.QUEUED, None), "b": TaskStamp(1, Status.QUEUED, None)}
    watch = TaskWatch(reads, interval_s=3600)
    with (
        watch.watching("a", reads.stamps["a"]) as a1,
        watch.watching("a", reads.stamps["a"]) as a2,
        watch.watching("a", reads.stamps["a"]) as a3,
        watch.watching("b", reads.stamps["b"]) as b,
    ):
        watch.poll()  # the first look: stamps as the requests read them, everyone checks once
        for watcher in (a1, a2, a3, b):
            watcher.wait(0)
        # When task a moves and the watch looks again
        reads.stamps["a"] = TaskStamp(2, Status.RUNNING, None)
        watch.poll()
        # Then one read covered both tasks each round, and a's watchers (only) wake to its new stamp
        assert reads.calls == [["a", "b"], ["a", "b"]]
        assert [w.wait(0) for w in (a1, a2, a3, b)] == [True, True, True, False]
        assert a1.stamp == TaskStamp(2, Status.RUNNING, None)
    # Once nobody watches, a round reads nothing
    watch.poll()
    assert len(reads.calls) == 2
    assert watch.watched() == 0


def test_a_task_the_read_does_not_find_wakes_nobody_and_keeps_its_last_stamp() -> None:
    # (an eventually consistent read just after the task was created, or a task whose history expired)
    reads = Reads()
    seed = TaskStamp(1, Status.QUEUED, None)
    watch = TaskWatch(reads, interval_s=3600)
    with watch.watching("a", seed) as watcher:
        watch.poll()
        assert not watcher.wait(0)
        assert watcher.stamp == seed


def test_a_lagging_read_wakes_nobody_and_a_watcher_never_sees_less_than_it_read_itself() -> None:
    # Given a task at version 3, watched since version 2
    reads = Reads()
    reads.stamps = {"a": TaskStamp(3, Status.RUNNING, None)}
    watch = TaskWatch(reads, interval_s=3600)
    with watch.watching("a", TaskStamp(2, Status.QUEUED, None)) as watcher:
        watch.poll()
        assert watcher.wait(0)
        # When an eventually consistent read lags behind what the watch saw (version 2 again)
        reads.stamps["a"] = TaskStamp(2, Status.QUEUED, None)
        watch.poll()
        # Then nobody wakes and the stamp stays the newest seen
        assert not watcher.wait(0)
        assert watcher.stamp == TaskStamp(3, Status.RUNNING, None)
        # And a request that read the task later than the watch sees its own read, not the watch's older one
        with watch.watching("a", TaskStamp(5, Status.SUCCEEDED, None)) as late:
            assert late.stamp == TaskStamp(5, Status.SUCCEEDED, None)


def test_the_watch_thread_wakes_a_waiter_within_a_few_intervals() -> None:
    reads = Reads()
    reads.stamps = {"a": TaskStamp(1, Status.QUEUED, None)}
    watch = TaskWatch(reads, interval_s=0.02)
    with watch.watching("a", reads.stamps["a"]) as watcher:
        reads.stamps["a"] = TaskStamp(2, Status.SUCCEEDED, None)
        started = time.monotonic()
        assert watcher.wait(5)
        assert time.monotonic() - started < 1
        assert watcher.stamp == TaskStamp(2, Status.SUCCEEDED, None)


def test_closing_every_watch_wakes_the_waiters_at_once() -> None:
    # Given a waiter on a task that does not move
    reads = Reads()
    watch = TaskWatch(reads, interval_s=3600)
    with watch.watching("a", TaskStamp(1, Status.QUEUED, None)) as watcher:
        threading.Timer(0.1, watch_module.close_all).start()  # as a stopping worker does on SIGTERM
        started = time.monotonic()
        # When the watches close, the wait ends (False: nothing moved) and the watcher says why
        assert not watcher.wait(10)
        assert time.monotonic() - started < 2
        assert watcher.closed
    # And a request that comes after (a kept-alive connection's, while the worker stops) does not wait either
    with watch.watching("b", TaskStamp(1, Status.QUEUED, None)) as late:
        started = time.monotonic()
        assert not late.wait(10)
        assert time.monotonic() - started < 1


# ---------------------------------------------------------------------------------------------------- wait_s
@pytest.mark.parametrize("wait_s", ["31", "-1", "soon", "nan", "inf"])
def test_wait_s_out_of_range_is_422(wait_s: str) -> None:
    api = Api()
    task = api.task()
    answer = api.get(f"/v1/tasks/{task.id}", wait_s=wait_s)
    assert answer.status_code == 422
    assert answer.json["errors"][0]["loc"] == ["wait_s"]


def test_a_wait_answers_as_soon_as_the_task_ends() -> None:
    # Given a running task that succeeds 0.3 s from now
    api = Api()
    task = api.claim(api.task())
    api.later(0.3, lambda: api.succeed(task))
    # When a client waits up to 20 s for it
    started = time.monotonic()
    answer = api.get(f"/v1/tasks/{task.id}", wait_s="20")
    # Then the answer is the succeeded task, soon after it ended
    assert answer.status_code == 200
    assert answer.json["status"] == "succeeded"
    assert answer.json["result"] == {"ok": True}
    assert answer.headers["ETag"] == f'"{answer.json["version"]}"'
    assert 0.25 < time.monotonic() - started < 3


def test_a_wait_on_a_task_that_does_not_end_answers_its_state_after_wait_s() -> None:
    # Given a task that is claimed meanwhile but does not end
    api = Api()
    task = api.task()
    api.later(0.1, lambda: api.claim(task))
    started = time.monotonic()
    answer = api.get(f"/v1/tasks/{task.id}", wait_s="0.5")
    # Then after wait_s the task comes back as it is then
    assert 0.5 <= time.monotonic() - started < 3
    assert answer.status_code == 200
    assert answer.json["status"] == "running"


def test_a_wait_answers_the_task_as_it_is_after_wait_s_even_if_the_watch_cannot_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a watch whose bulk reads fail (say, BatchGetItem throttled), and a task that ends during the wait
    def throttled(_queries: Any, _ids: Sequence[str]) -> dict[str, TaskStamp]:
        raise StoreUnavailable("throttled (fake)")

    monkeypatch.setattr(InMemoryTaskQueries, "stamps", throttled)
    api = Api()
    task = api.claim(api.task())
    api.later(0.1, lambda: api.succeed(task))
    # When a client waits 0.5 s
    answer = api.get(f"/v1/tasks/{task.id}", wait_s="0.5")
    # Then it gets the task as it is after those 0.5 s (succeeded), not as it was when the wait began
    assert answer.status_code == 200
    assert answer.json["status"] == "succeeded"


def test_a_wait_for_another_groups_task_is_404() -> None:
    api = Api()
    task = api.task("team-a")
    started = time.monotonic()
    assert api.get(f"/v1/tasks/{task.id}", BOB, wait_s="5").status_code == 404
    assert time.monotonic() - started < 1


def hold_waits(api: Api, task: Task, count: int) -> list[threading.Thread]:
    """``count`` waits of alice's on ``task`` (one that does not end soon), each holding a slot for a second."""
    holders = [
        threading.Thread(target=lambda: api.get(f"/v1/tasks/{task.id}", wait_s="1"), daemon=True) for _ in range(count)
    ]
    for holder in holders:
        holder.start()
    time.sleep(0.2)
    return holders


def assert_refused_both(api: Api, task: Task, detail: str) -> None:
    """A wait and a stream of alice's on ``task`` are refused at once: 503 problem+json with Retry-After."""
    for answer in (api.get(f"/v1/tasks/{task.id}", wait_s="1"), api.get(f"/v1/tasks/{task.id}/stream")):
        assert answer.status_code == 503
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert int(answer.headers["Retry-After"]) >= 1
        assert detail in answer.json["detail"]
        assert "Cache-Control" not in answer.headers


def test_waits_and_streams_past_the_bound_are_503_with_retry_after() -> None:
    # Given a replica with one wait slot, taken by a wait on a task that does not end soon
    api = Api(gateway_streams=1)
    waiting, other = api.task(), api.task()
    (holder,) = hold_waits(api, waiting, 1)
    # When another wait and a stream come, then both are refused at once: the replica is full
    assert_refused_both(api, other, "this replica holds 1 streams and waits")
    # And a plain read still answers, as does a wait on an ended task (nothing to wait for: no slot taken)
    assert api.get(f"/v1/tasks/{other.id}").status_code == 200
    ended = api.succeed(api.claim(other))
    assert api.get(f"/v1/tasks/{ended.id}", wait_s="5").json["status"] == "succeeded"
    # And once the wait is over, its slot is free again
    holder.join(5)
    assert api.get(f"/v1/tasks/{ended.id}/stream").status_code == 200


def test_one_principal_holds_at_most_its_share_of_the_slots_and_the_others_still_get_theirs() -> None:
    # Given a replica with four wait slots, at most two per principal, and alice holding two waits
    api = Api(gateway_streams=4, gateway_streams_per_principal=2)
    mine, theirs = api.task("team-a"), api.task("team-b")
    holders = hold_waits(api, mine, 2)
    # When alice asks for a third stream or wait, then each is refused at once: it is her share that is full
    assert_refused_both(api, mine, "you hold 2 streams and waits on this replica already, your share")
    # And bob, with slots left on the replica, still waits (a 503 would come at once)
    started = time.monotonic()
    assert api.get(f"/v1/tasks/{theirs.id}", BOB, wait_s="0.3").status_code == 200
    assert time.monotonic() - started >= 0.3
    for holder in holders:
        holder.join(5)
    # And once her waits are over, alice gets a slot again
    assert api.get(f"/v1/tasks/{api.succeed(api.claim(mine)).id}/stream").status_code == 200


# ---------------------------------------------------------------------------------------------------- streams
def test_a_stream_of_an_ended_task_replays_its_events_as_in_events_and_ends() -> None:
    # Given a task that has succeeded
    api = Api()
    task = api.succeed(api.claim(api.task()))
    # When its stream is read
    answer = api.get(f"/v1/tasks/{task.id}/stream")
    # Then it is an event stream, not to be cached or buffered, that tells the client how soon to reconnect
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    assert answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["X-Accel-Buffering"] == "no"
    assert messages(answer.text)[0] == {"retry": "1000"}
    # And it holds every event once, in order, as /events lists them, and ends after the terminal one
    events = events_of(answer.text)
    listed = api.get(f"/v1/tasks/{task.id}/events").json["items"]
    assert (
        [e["event"] for e in events]
        == [item["type"] for item in listed]
        == [
            "submitted",
            "queued",
            "claimed",
            "succeeded",
        ]
    )
    assert [int(e["id"]) for e in events] == [item["seq"] for item in listed]
    assert [json.loads(e["data"]) for e in events] == listed


def test_a_long_history_is_streamed_whole_and_in_order_a_page_at_a_time() -> None:
    # Given a task changed 250 times (more than a read's 100 events), then cancelled
    api = Api()
    task = api.task()
    for n in range(250):
        task = api.change(task, lambda t, n=n: t.update({"name": f"n{n}"}, "alice", api.clock.now()))
    task = api.change(task, lambda t: t.request_cancel("alice", api.clock.now()))
    # When its stream is read, then every event comes once, in order, ending with the cancel
    events = events_of(api.get(f"/v1/tasks/{task.id}/stream").text)
    assert [int(e["id"]) for e in events] == list(range(1, task.version + 1))
    assert events[-1]["event"] == "cancelled"


def test_a_stream_resumes_after_last_event_id() -> None:
    api = Api()
    task = api.succeed(api.claim(api.task()))
    answer = api.http.simulate_get(f"/v1/tasks/{task.id}/stream", headers={**ALICE, "Last-Event-ID": "2"})
    assert [(e["id"], e["event"]) for e in events_of(answer.text)] == [("3", "claimed"), ("4", "succeeded")]


@pytest.mark.parametrize("last", ["x", "-1", "9", "1.5"])
def test_a_last_event_id_that_is_no_event_of_the_task_is_400(last: str) -> None:
    api = Api()
    task = api.task()
    answer = api.http.simulate_get(f"/v1/tasks/{task.id}/stream", headers={**ALICE, "Last-Event-ID": last})
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == "application/problem+json"


def test_a_stream_of_another_groups_task_or_of_no_task_is_404() -> None:
    api = Api()
    task = api.task("team-a")
    assert api.get(f"/v1/tasks/{task.id}/stream", BOB).status_code == 404
    assert api.get("/v1/tasks/no-such-task/stream").status_code == 404


def test_a_stream_follows_a_running_task_with_its_progress_until_it_ends() -> None:
    # Given a queued task that will be claimed, report progress twice, and succeed
    api = Api()
    task = api.task()

    def run() -> None:
        claimed = api.claim(task)
        assert claimed.claim_seq is not None
        for fraction in (0.25, 0.75):
            time.sleep(0.15)
            api.clock.advance(1)
            assert api.store.report_progress(task.id, claimed.claim_seq, Progress(fraction, "working", api.clock.now()))
        time.sleep(0.15)
        api.succeed(claimed)

    api.later(0.1, run)
    # When its stream is read from the start
    answer = api.get(f"/v1/tasks/{task.id}/stream")
    # Then it holds the events and the progress in the order they happened, and ends after succeeded
    got = [(m["event"], m.get("id")) for m in events_of(answer.text)]
    assert got == [
        ("submitted", "1"),
        ("queued", "2"),
        ("claimed", "3"),
        ("progress", None),
        ("progress", None),
        ("succeeded", "4"),
    ]
    reports = [json.loads(m["data"]) for m in events_of(answer.text) if m["event"] == "progress"]
    assert [r["fraction"] for r in reports] == [0.25, 0.75]
    assert set(reports[0]) == {"fraction", "message", "at"}


def test_progress_comes_between_the_events_recorded_before_and_after_it() -> None:
    at = FixedClock().now()
    events = [
        Event(3, EventType.CLAIMED, at, "executor:w"),
        Event(4, EventType.SUCCEEDED, at + timedelta(seconds=2), "executor:w"),
    ]
    report = Progress(1.0, "done", at + timedelta(seconds=1))
    frames = list(in_order(events, report))
    assert frames[1] == progress_frame(report)
    assert frames[1].decode().startswith("event: progress\ndata: ")
    assert [f.decode().split("\n")[0] for f in frames] == ["id: 3", "event: progress", "id: 4"]


def test_a_silent_stream_sends_keep_alives_and_ends_at_its_lifetime() -> None:
    # Given streams that ping after 0.1 s of silence and last 0.45 s
    api = Api(stream_ping_s=0.1, stream_max_s=0.45)
    task = api.task()
    started = time.monotonic()
    answer = api.get(f"/v1/tasks/{task.id}/stream")
    # Then a stream of a task that does not move replays, pings, and ends after its lifetime
    assert 0.45 <= time.monotonic() - started < 3
    pings = [m for m in messages(answer.text) if m.get("comment") == "ping"]
    assert 3 <= len(pings) <= 5
    assert [e["event"] for e in events_of(answer.text)] == ["submitted", "queued"]


def test_a_wake_up_with_nothing_to_send_does_not_put_the_next_ping_off() -> None:
    # Given a stream that pings after 0.5 s of silence, whose watch wakes it 0.3 s in with nothing new (its first
    # look finds the task as the stream read it)
    api = Api()
    task = api.task()
    stamps = Reads()
    stamps.stamps[task.id] = TaskStamp(task.version, task.status, task.progress)
    timing = StreamTiming(ping_s=0.5, max_s=5, retry_ms=1000, recheck_s=0.02)
    stream = EventStream(
        task, 0, TaskHistory(api.store), TaskWatch(stamps, 0.3), Slots(1, 1).take("stream", "a"), timing
    )
    try:
        assert [next(stream) for _ in range(3)][1:] == [event_frame(e) for e in api.store.events(task.id)]
        written_at = time.monotonic()
        # When the stream goes on
        assert next(stream) == PING
        # Then the ping comes 0.5 s after the last write, not 0.5 s after the wake-up
        assert 0.45 <= time.monotonic() - written_at < 0.7
        assert len(stamps.calls) >= 1
    finally:
        stream.close()


def test_the_longest_ping_interval_leaves_the_client_time_before_it_calls_a_silent_stream_broken() -> None:
    # A stream is silent for at most the ping interval, give or take a watch interval (at most 5 s); the client
    # takes PING_S + READ_GRACE_S of silence for a broken stream: the setting's maximum stays under that
    longest = next(m.le for m in GatewaySettings.model_fields["stream_ping_s"].metadata if hasattr(m, "le"))
    longest_watch = next(m.le for m in GatewaySettings.model_fields["watch_interval_s"].metadata if hasattr(m, "le"))
    assert longest + longest_watch <= follow.PING_S + calls.READ_GRACE_S
    with pytest.raises(ValidationError):
        GatewaySettings(stream_ping_s=longest + 1)


def test_closing_a_stream_frees_its_slot_even_if_it_never_started() -> None:
    # Given a stream whose slot is the only one, closed by the server before its first message (the client left)
    api = Api()
    task = api.task()
    slots = Slots(1, 1)
    timing = StreamTiming(ping_s=5, max_s=5, retry_ms=1000, recheck_s=0.02)
    stream = EventStream(
        task, 0, TaskHistory(api.store), TaskWatch(lambda ids: {}, 3600), slots.take("stream", "alice"), timing
    )
    stream.close()
    # Then the slot is free again (and closing twice gives nothing back twice)
    stream.close()
    second = slots.take("stream", "alice")
    with pytest.raises(NoSlot):
        slots.take("stream", "alice")
    second.release()


def test_the_worker_stopping_ends_its_open_streams_at_once() -> None:
    # Given an open stream of a task that does not move
    api = Api(stream_ping_s=20, stream_max_s=60)
    task = api.task()
    threading.Timer(0.3, watch_module.close_all).start()  # what DeadlineWorker.handle_exit does on SIGTERM
    started = time.monotonic()
    answer = api.get(f"/v1/tasks/{task.id}/stream")
    # Then it ends when the worker stops, long before its lifetime, after what it had sent
    assert time.monotonic() - started < 3
    assert [e["event"] for e in events_of(answer.text)] == ["submitted", "queued"]
