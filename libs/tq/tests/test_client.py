"""``tq.Client`` against the gateway app in-process: every method, errors, retries, paging, keyed submits."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx
import pytest

import tq
from tq.models import CancelledTasks, Event, Overview, ProgressEvent, Queue, Redriven, Run, Task
from tq_gateway.settings import GatewaySettings
from tqcore.activity import Activity
from tqcore.errors import StoreUnavailable
from tqcore.testing import InMemoryTaskStore

if TYPE_CHECKING:
    from conftest import Gateway

pytestmark = pytest.mark.unit


def failed_task(gateway: Gateway, client: tq.Client) -> Task:
    """A task whose only attempt failed: dead-lettered."""
    task = client.submit("echo", "team-a", retry={"max_retries": 0})
    gateway.run(task.id, error="boom")
    return client.get(task.id)


# ---------------------------------------------------------------------------------------------- submit, read
def test_submit_returns_the_typed_task_with_a_generated_idempotency_key(client: tq.Client) -> None:
    task = client.submit("echo", "team-a", {"x": 1}, priority="high", name="first", timeout_s=60)
    assert isinstance(task, Task)
    assert (task.type, task.group, task.owner, task.payload) == ("echo", "team-a", "alice", {"x": 1})
    assert (task.status, task.priority, task.name, task.timeout_s, task.pool) == (
        "queued",
        "high",
        "first",
        60,
        "default",
    )
    assert task.idempotency_key is not None
    assert task.idempotency_key.startswith("tq-py-")
    assert client.get(task.id) == task
    assert client.submit("echo", "team-a").idempotency_key != task.idempotency_key


def test_a_submit_with_the_same_key_is_the_same_task(gateway: Gateway, client: tq.Client) -> None:
    first = client.submit("echo", "team-a", {"x": 1}, idempotency_key="order-17")
    again = client.submit("echo", "team-a", {"x": 1}, idempotency_key="order-17")
    assert again.id == first.id
    assert len(gateway.queue.sent) == 1
    with pytest.raises(tq.ApiError) as refused:
        client.submit("echo", "team-a", {"x": 2}, idempotency_key="order-17")
    assert refused.value.status == 409


def test_a_schedule_with_datetimes_is_sent_as_rfc3339(client: tq.Client) -> None:
    at = client.get(client.submit("echo", "team-a").id).created_at.replace(year=2030)
    task = client.submit("echo", "team-a", schedule={"at": at})
    assert task.status == "scheduled"
    assert task.schedule is not None
    assert task.schedule.at == at


def test_unknown_fields_of_a_newer_server_are_kept(client: tq.Client) -> None:
    document = client.submit("echo", "team-a").model_dump(mode="json")
    task = Task.model_validate({**document, "colour": "blue"})
    assert task.model_extra == {"colour": "blue"}


# ---------------------------------------------------------------------------------------------------- errors
def test_an_error_answer_raises_api_error_with_the_problem(client: tq.Client) -> None:
    with pytest.raises(tq.ApiError) as missing:
        client.get("t-404")
    assert missing.value.status == 404
    assert missing.value.problem["type"] == "urn:tq:problem:not-found"
    assert str(missing.value) == "404 Not Found: no task t-404"


def test_a_validation_error_carries_its_errors(client: tq.Client) -> None:
    with pytest.raises(tq.ApiError) as invalid:
        client.submit("echo", "team-a", timeout_s=0)
    assert invalid.value.status == 422
    assert [e["loc"] for e in invalid.value.problem["errors"]] == [["timeout_s"]]


def test_other_groups_are_forbidden_and_their_tasks_not_found(gateway: Gateway, client: tq.Client) -> None:
    theirs = gateway.client("dev-bob").submit("echo", "team-b")
    with pytest.raises(tq.ApiError) as forbidden:
        client.submit("echo", "team-b")
    assert forbidden.value.status == 403
    with pytest.raises(tq.ApiError) as hidden:
        client.cancel(theirs.id)
    assert hidden.value.status == 404


def test_without_a_token_the_api_answers_401(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TQ_TOKEN", raising=False)
    with pytest.raises(tq.ApiError) as refused:
        gateway.client(None).get("t-1")
    assert refused.value.status == 401


def test_url_and_token_default_to_the_environment(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TQ_URL", "http://from-env:9/")
    monkeypatch.setenv("TQ_TOKEN", "dev-carol")
    with tq.Client(transport=gateway.transport) as client:
        assert client.submit("echo", "team-b").owner == "carol"
    assert str(gateway.transport.sent[-1].url) == "http://from-env:9/v1/tasks"


def test_an_answer_that_is_not_a_problem_still_raises_api_error() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>bad gateway</html>")

    client = tq.Client("http://x", "t", transport=httpx.MockTransport(proxy), retries=tq.Retries(attempts=1))
    with pytest.raises(tq.ApiError) as failed:
        client.get("t-1")
    assert failed.value.status == 502
    assert failed.value.problem["detail"] == "<html>bad gateway</html>"


# --------------------------------------------------------------------------------------------------- retries
def test_a_429_is_retried_after_its_retry_after(gateway_of: type[Gateway]) -> None:
    # One request a second: the second request, made at once, is refused whatever the machine's load; the client's
    # pause (recorded, slept a hundredth of) is then made a whole real second, the bucket's refill.
    limited = gateway_of(GatewaySettings(rate_limit_rps=1, rate_limit_burst=1))
    limited.on_pause = lambda: time.sleep(0.99)
    with limited.client() as client:
        task = client.submit("echo", "team-a")
        assert client.get(task.id).id == task.id  # refused at once (burst 1), admitted on the retry
    assert limited.pauses == [1.0]
    assert [r.method for r in limited.transport.sent] == ["POST", "GET", "GET"]


def test_a_503_is_retried_and_gives_up_when_the_budget_is_spent(gateway_of: type[Gateway]) -> None:
    class Throttled(InMemoryTaskStore):
        outages = 1

        def get(self, task_id: str) -> Task:
            if self.outages:
                self.outages -= 1
                raise StoreUnavailable("throttled")
            return super().get(task_id)

    store = Throttled()
    gateway = gateway_of(store=store)
    client = gateway.client()
    task = client.submit("echo", "team-a")
    assert client.get(task.id).id == task.id
    assert gateway.pauses == [1.0]  # the gateway's Retry-After
    store.outages = 10
    with pytest.raises(tq.ApiError) as unavailable:
        client.get(task.id)
    assert unavailable.value.status == 503
    assert len(gateway.pauses) == 1 + 3  # four attempts in all


def test_a_submit_whose_answer_was_lost_is_sent_again_and_runs_once(gateway: Gateway, client: tq.Client) -> None:
    gateway.transport.break_next("after", httpx.ReadError("connection reset"))
    task = client.submit("echo", "team-a", {"x": 1})
    posts = [r for r in gateway.transport.sent if r.method == "POST"]
    assert len(posts) == 2
    assert posts[0].content == posts[1].content  # the same idempotency key both times
    assert [t.id for t in client.list(group="team-a")] == [task.id]
    assert len(gateway.queue.sent) == 1


def test_a_change_whose_answer_was_lost_is_not_sent_again(gateway: Gateway, client: tq.Client) -> None:
    task = client.submit("echo", "team-a")
    gateway.transport.break_next("after", httpx.ReadError("connection reset"))
    with pytest.raises(tq.NetworkError) as broken:
        client.cancel(task.id)
    assert broken.value.status is None
    assert "ReadError" in str(broken.value)
    assert client.get(task.id).status == "cancelled"  # it did reach the server: sending it again would 409


def test_a_request_that_never_connected_is_sent_again_whatever_it_is(gateway: Gateway, client: tq.Client) -> None:
    task = client.submit("echo", "team-a")
    gateway.transport.break_next("before", httpx.ConnectError("refused"))
    assert client.cancel(task.id).status == "cancelled"
    assert gateway.pauses == [0.5]


def test_a_server_out_of_reach_raises_network_error_after_the_retries() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    pauses: list[float] = []
    client = tq.Client("http://x", "t", transport=httpx.MockTransport(refuse), sleep=pauses.append)
    with pytest.raises(tq.NetworkError):
        client.get("t-1")
    assert pauses == [0.5, 1.0, 2.0, 4.0]


# ------------------------------------------------------------------------------------------------- listings
def test_list_follows_every_page(gateway: Gateway, client: tq.Client) -> None:
    submitted = [client.submit("echo", "team-a", {"n": n}).id for n in range(60)]
    listed = client.list(group="team-a", status="queued", type="echo")
    assert [task.id for task in listed] == sorted(submitted, reverse=True)  # newest first; one instant: by id
    pages = [r for r in gateway.transport.sent if r.method == "GET"]
    assert len(pages) == 2  # 50 a page by default
    assert pages[1].url.params["cursor"]
    assert list(client.list(group="team-a", status="succeeded")) == []


def test_list_page_is_one_page_as_the_api_answers_it(client: tq.Client) -> None:
    for n in range(3):
        client.submit("echo", "team-a", {"n": n})
    first = client.list_page(group="team-a", limit=2)
    assert [t.payload for t in first.items] == [{"n": 2}, {"n": 1}]
    assert first.next_cursor is not None
    rest = client.list_page(group="team-a", limit=2, cursor=first.next_cursor)
    assert ([t.payload for t in rest.items], rest.next_cursor) == ([{"n": 0}], None)


def test_list_by_name_asks_the_api_for_names_containing_the_text(gateway: Gateway, client: tq.Client) -> None:
    wanted = client.submit("echo", "team-a", name="Nightly report").id
    client.submit("echo", "team-a", name="cleanup")
    assert [t.id for t in client.list(group="team-a", name="REPORT")] == [wanted]
    assert [t.id for t in client.list_page(group="team-a", name="report").items] == [wanted]
    assert gateway.transport.sent[-1].url.params["name"] == "report"


def test_runs_log_and_events_of_a_finished_task(gateway: Gateway, client: tq.Client) -> None:
    task = client.submit("echo", "team-a", {"x": 1})
    gateway.run(task.id, result={"x": 1}, log=b"hello\n")
    runs = list(client.runs(task.id))
    assert [type(r) for r in runs] == [Run]
    assert (runs[0].run_id, runs[0].status, runs[0].worker) == ("1.1", "succeeded", "host-a:1")
    events = list(client.events(task.id))
    assert all(isinstance(e, Event) for e in events)
    assert [e.type for e in events] == ["submitted", "queued", "claimed", "succeeded"]
    assert runs[0].log_size == 6
    assert client.log(task.id, "1.1") == "hello\n"
    with pytest.raises(tq.ApiError) as no_run:
        client.log(task.id, "1.2")
    assert no_run.value.status == 404


def test_the_dead_letters_are_listed_and_redriven(gateway: Gateway, client: tq.Client) -> None:
    failed = [failed_task(gateway, client) for _ in range(3)]
    assert {t.id for t in client.dlq("team-a")} == {t.id for t in failed}
    assert len(client.dlq_page("team-a", limit=2).items) == 2
    dry = client.redrive_dlq("team-a", ids=[failed[0].id], dry_run=True)
    assert dry == Redriven(count=1, ids=[failed[0].id], dry_run=True)
    assert client.get(failed[0].id).status == "failed"
    assert client.redrive(failed[0].id).status == "queued"
    redriven = client.redrive_dlq("team-a", limit=5)
    assert (redriven.count, set(redriven.ids), redriven.dry_run) == (2, {failed[1].id, failed[2].id}, False)
    assert list(client.dlq("team-a")) == []


def test_dead_letters_by_type_and_schedules(gateway: Gateway, client: tq.Client) -> None:
    dead = failed_task(gateway, client)
    assert [t.id for t in client.dlq("team-a", type="echo")] == [dead.id]
    assert client.dlq_page("team-a", type="other").items == []
    assert client.redrive_dlq("team-a", type="other", dry_run=True) == Redriven(count=0, ids=[], dry_run=True)
    every = client.submit("echo", "team-a", schedule={"every_s": 60})
    client.submit("echo", "team-a")
    assert [t.id for t in client.schedules("team-a")] == [every.id]
    assert [t.id for t in client.schedules_page(type="echo", limit=1).items] == [every.id]


def test_tasks_are_cancelled_in_bulk_after_a_dry_run(gateway: Gateway, client: tq.Client) -> None:
    # Given two queued echo tasks of team-a and one that already ran
    queued = [client.submit("echo", "team-a") for _ in range(2)]
    ran = client.submit("echo", "team-a")
    gateway.run(ran.id)
    # When a dry run is asked for, then the cancel itself
    dry = client.cancel_many("team-a", status="queued", type="echo", limit=10, dry_run=True)
    assert dry == CancelledTasks(count=2, ids=[queued[1].id, queued[0].id], dry_run=True)
    assert {client.get(t.id).status for t in queued} == {"queued"}
    done = client.cancel_many("team-a", ids=[ran.id, queued[0].id])
    # Then the named task not yet ended is cancelled, and only it
    assert (done.count, done.ids, done.dry_run) == (1, [queued[0].id], False)
    assert [client.get(t.id).status for t in (*queued, ran)] == ["cancelled", "queued", "succeeded"]
    assert [e.actor for e in client.events(queued[0].id)][-1] == "alice"


def test_a_bulk_cancel_is_sent_again_only_as_a_dry_run(gateway: Gateway, client: tq.Client) -> None:
    task = client.submit("echo", "team-a")
    gateway.transport.break_next("after", httpx.ReadError("connection reset"))
    assert client.cancel_many("team-a", dry_run=True).ids == [task.id]  # sent again: it changes nothing
    gateway.transport.break_next("after", httpx.ReadError("connection reset"))
    with pytest.raises(tq.NetworkError):
        client.cancel_many("team-a")
    assert client.get(task.id).status == "cancelled"
    with pytest.raises(tq.ApiError) as forbidden:
        client.cancel_many("team-b")
    assert forbidden.value.status == 403


def test_queues_are_typed(client: tq.Client) -> None:
    client.submit("echo", "team-a", priority="low")
    queues = client.queues()
    assert all(isinstance(q, Queue) for q in queues)
    assert {(q.priority, q.depth) for q in queues} == {("high", 0), ("normal", 0), ("low", 1)}


def test_the_overview_is_typed(gateway: Gateway, client: tq.Client) -> None:
    # Given a waiting task and an executor whose heartbeat reported two successes this minute
    client.submit("echo", "team-a", priority="low")
    minute = int(gateway.clock.now().timestamp() // 60)
    gateway.registry.heartbeat("executor", "h:1", 30, Activity(minute, succeeded=(2,), pool="default"))
    # When alice asks for the overview
    overview = client.overview()
    # Then it is the typed answer: the pool with its executor and queues, the minute's successes, her dead letters
    assert isinstance(overview, Overview)
    [pool] = overview.pools
    low = next(q for q in pool.queues if q.priority == "low")
    assert (pool.name, pool.executors, low.depth, low.oldest_age_s) == ("default", 1, 1, 0.0)
    assert overview.throughput[-1].succeeded == 2
    assert (overview.scheduler.lag_s, overview.dead_letters) == (None, {"team-a": 0})


# ---------------------------------------------------------------------------------------------- change, end
def test_update_with_if_match(client: tq.Client) -> None:
    task = client.submit("echo", "team-a")
    changed = client.update(task.id, if_match=task.version, priority="low", description="later")
    assert (changed.priority, changed.description, changed.version) == ("low", "later", task.version + 1)
    with pytest.raises(tq.ApiError) as stale:
        client.update(task.id, if_match=task.version, priority="high")
    assert stale.value.status == 412


def test_cancel(client: tq.Client) -> None:
    task = client.submit("echo", "team-a")
    assert client.cancel(task.id, if_match=f'"{task.version}"').status == "cancelled"


def test_pause_and_resume(client: tq.Client) -> None:
    start = client.get(client.submit("echo", "team-a").id).created_at + timedelta(hours=1)
    task = client.submit("echo", "team-a", schedule={"every_s": 60, "start_at": start})
    paused = client.pause(task.id)
    assert (paused.status, paused.paused_at is not None, client.pause(task.id).version) == (
        "paused",
        True,
        paused.version,
    )
    resumed = client.resume(task.id)
    assert (resumed.status, resumed.next_run_at, resumed.paused_at) == ("scheduled", start, None)
    with pytest.raises(tq.ApiError) as refused:
        client.resume(task.id)
    assert refused.value.status == 409


def test_wait_returns_an_ended_task_at_once(gateway: Gateway, client: tq.Client) -> None:
    task = client.submit("echo", "team-a", {"x": 1})
    gateway.run(task.id, result={"x": 1})
    done = client.wait(task.id)
    assert (done.status, done.result, done.ended) == ("succeeded", {"x": 1}, True)
    assert gateway.transport.sent[-1].url.params["wait_s"] == "30"
    assert gateway.pauses == []


def test_wait_returns_the_task_once_it_has_ended(gateway: Gateway, client: tq.Client) -> None:
    task = client.submit("echo", "team-a", {"x": 1})
    threading.Timer(0.05, gateway.run, (task.id,), {"result": {"x": 1}}).start()
    done = client.wait(task.id, timeout_s=5)
    assert (done.status, done.result) == ("succeeded", {"x": 1})


def test_wait_with_no_time_left_reads_the_task_as_it_is(gateway: Gateway, client: tq.Client) -> None:
    task = client.submit("echo", "team-a")
    assert client.wait(task.id, timeout_s=0).status == "queued"
    assert "wait_s" not in gateway.transport.sent[-1].url.params


def test_a_failed_task_has_ended(gateway: Gateway, client: tq.Client) -> None:
    task = failed_task(gateway, client)
    done = client.wait(task.id)
    assert (done.status, done.ended, done.last_error) == ("failed", True, tq.models.LastError(type="E", message="boom"))


# -------------------------------------------------------------------------------------------------- package
def test_import_tq_does_not_import_the_client() -> None:
    code = "import sys, tq; assert 'httpx' not in sys.modules and 'tq.client' not in sys.modules; tq.Client"
    code += "; assert 'httpx' in sys.modules and tq.Retries().attempts == 5 and not hasattr(tq, 'Nope')"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(("task_id", "path"), [("../dlq", b"/v1/tasks/..%2Fdlq"), ("..", b"/v1/tasks/%2E%2E")])
def test_a_task_id_never_reaches_another_route(gateway: Gateway, client: tq.Client, task_id: str, path: bytes) -> None:
    with pytest.raises(tq.ApiError) as missing:
        client.get(task_id)
    assert missing.value.status == 404
    assert gateway.transport.sent[-1].url.raw_path == path
    with pytest.raises(ValueError, match="empty"):
        client.get("")


def test_a_success_that_is_not_the_resource_is_an_api_error() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>sign in to the wifi</html>")

    with pytest.raises(tq.ApiError) as odd:
        tq.Client("http://x", "t", transport=httpx.MockTransport(proxy)).get("t-1")
    assert odd.value.status == 200
    assert odd.value.problem["title"] == "Unexpected answer"
    assert str(odd.value).startswith("200 Unexpected answer: the answer of GET /v1/tasks/t-1 does not read as Task")


# ------------------------------------------------------------------------------------------ batch and stream
def test_submit_many_answers_each_item_in_order(gateway: Gateway, client: tq.Client) -> None:
    first = client.submit("echo", "team-a", {"n": 0}, idempotency_key="k-0")
    items = client.submit_many(
        [
            {"type": "echo", "group": "team-a", "payload": {"n": 0}, "idempotency_key": "k-0"},
            {"type": "echo", "group": "team-a", "payload": {"n": 1}},
            {"type": "nope", "group": "team-a"},
            {"type": "echo", "group": "team-b"},
        ]
    )
    assert [item.status for item in items] == [200, 201, 422, 403]
    assert [item.ok for item in items] == [True, True, False, False]
    assert items[0].task is not None
    assert items[0].task.id == first.id
    assert items[1].task is not None
    assert items[1].task.idempotency_key is not None  # every item is keyed
    assert items[2].error is not None
    assert items[2].error.type == "urn:tq:problem:unknown-task-type"


def test_submit_many_sends_500_a_request_and_a_lost_answer_runs_nothing_twice(
    gateway: Gateway, client: tq.Client
) -> None:
    gateway.transport.break_next("after", httpx.ReadError("connection reset"))
    items = client.submit_many({"type": "echo", "group": "team-a", "payload": {"n": n}} for n in range(1100))
    assert [item.status for item in items] == [200] * 500 + [201] * 600  # the first 500 replayed
    assert [item.task.payload for item in items if item.task] == [{"n": n} for n in range(1100)]
    batches = [len(json.loads(r.content)["tasks"]) for r in gateway.transport.sent]
    assert batches == [500, 500, 500, 100]  # the first sent twice: its answer was lost
    assert gateway.transport.sent[0].extensions["timeout"]["read"] == 60  # 500 writes may take a while
    assert len(gateway.queue.sent) == 1100


def test_submit_many_sends_again_with_their_keys_the_items_a_partial_write_answered_503(
    throttled_part_way: Gateway,
) -> None:
    # Given storage that throttles a batch part way (the gateway answers the unwritten items 503, "send again")
    gateway = throttled_part_way
    # When three tasks are submitted in one call
    items = gateway.client().submit_many({"type": "echo", "group": "team-a", "payload": {"n": n}} for n in range(3))
    # Then all three are created, each once: the two refused items went again, with the keys of the first request
    assert [item.status for item in items] == [201, 201, 201]
    assert [item.task.payload for item in items if item.task] == [{"n": n} for n in range(3)]
    first, second = (json.loads(r.content)["tasks"] for r in gateway.transport.sent)
    assert [body["idempotency_key"] for body in second] == [body["idempotency_key"] for body in first[1:]]
    assert len(gateway.queue.sent) == 3
    assert len(gateway.pauses) == 1


def test_stream_yields_the_events_then_ends_with_the_task(gateway: Gateway, client: tq.Client) -> None:
    task = client.submit("echo", "team-a")
    threading.Timer(0.1, gateway.run, (task.id,), {"result": 1, "progress": (0.5, "half way")}).start()
    events = list(client.stream(task.id))
    assert [event.type for event in events] == ["submitted", "queued", "claimed", "progress", "succeeded"]
    assert isinstance(events[3], ProgressEvent)
    assert (events[3].fraction, events[3].message) == (0.5, "half way")


def test_a_stream_broken_midway_resumes_after_the_last_event(gateway: Gateway, client: tq.Client) -> None:
    task = client.submit("echo", "team-a")
    gateway.run(task.id, result=1)
    gateway.transport.break_next("during", httpx.RemoteProtocolError("peer closed"), chunks=3)
    events = list(client.stream(task.id))
    assert [e.seq for e in events if isinstance(e, Event)] == [1, 2, 3, 4]
    streams = [r for r in gateway.transport.sent if r.url.path.endswith("/stream")]
    assert len(streams) == 2
    assert streams[1].headers["Last-Event-ID"] == "2"  # the stream's retry hint, events 1 and 2, then it broke


def test_a_stream_of_another_group_task_is_not_found(gateway: Gateway, client: tq.Client) -> None:
    theirs = gateway.client("dev-bob").submit("echo", "team-b")
    with pytest.raises(tq.ApiError) as hidden:
        next(iter(client.stream(theirs.id)))
    assert hidden.value.status == 404


def test_a_stream_the_server_ends_early_is_resumed_until_the_task_ends(gateway_of: type[Gateway]) -> None:
    short = gateway_of(GatewaySettings(watch_interval_s=0.05, stream_ping_s=5, stream_max_s=0.2))
    client = short.client()
    task = client.submit("echo", "team-a")
    threading.Timer(0.5, short.run, (task.id,)).start()
    events = list(client.stream(task.id))
    assert [e.seq for e in events if isinstance(e, Event)] == [1, 2, 3, 4]  # each once, in order
    streams = [r for r in short.transport.sent if r.url.path.endswith("/stream")]
    assert len(streams) >= 2
    assert streams[-1].headers["Last-Event-ID"] == "2"
    assert set(short.pauses) == {1.0}  # the gateway's retry: hint before each resumption
