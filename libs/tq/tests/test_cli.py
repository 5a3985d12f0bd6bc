"""The ``tq`` command line over the gateway app in-process (``tq_gateway.testing.app_over_fakes`` behind
``httpx.WSGITransport``): output shapes, exit codes and one-line errors. The e2e module runs the installed command
against a real stack."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import falcon.testing
import httpx
import pytest
from click.testing import CliRunner, Result

from tq.cli import cli
from tq.cli.app import State
from tq.cli.config import Target
from tq.cli.tasks import STATUSES
from tq.client import Client
from tq.models import ENDED
from tq.retries import Retries
from tqcore.domain.codec import event_to_dict, ts
from tqcore.domain.model import ErrorInfo, Progress, RunLog, Status
from tqcore.domain.task import Task
from tqcore.usecases.service import mutate

pytestmark = pytest.mark.unit

WORKER = "host-a:1"
LOG_RETENTION_S = 30 * 86400
Step = Callable[[], None]


class World:
    """The client tests' gateway over fakes (``gateway`` fixture); ``tq(...)`` runs the command line against it as
    alice (or ``--token``).

    ``steps`` play an executor, one step at a time, so a command that follows a task sees it move without threads
    or clocks: ``GET /v1/tasks/{id}/stream`` is served here as contract section 7 has it (each event of the
    history, then progress, then the next step), or, with ``streams`` off, answered 404 as by an older gateway;
    then the next step runs before each read of the task."""

    def __init__(self, gateway: Any) -> None:
        self.store, self.clock, self.logs, self.app = gateway.store, gateway.clock, gateway.logs, gateway.app
        self.steps: list[Step] = []
        self.streams = True
        self.slept: list[float] = []

    def wsgi(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        parts = environ["PATH_INFO"].split("/")
        if environ["REQUEST_METHOD"] == "GET" and len(parts) == 5 and parts[4] == "stream":
            if not self.streams:
                start_response("404 Not Found", [("Content-Type", "application/problem+json")])
                return [b'{"type": "about:blank", "title": "Not Found", "status": 404, "detail": "no route"}']
            start_response("200 OK", [("Content-Type", "text/event-stream")])
            return self._stream(parts[3])
        if environ["REQUEST_METHOD"] == "GET" and len(parts) == 4 and self.steps and not self.streams:
            self.steps.pop(0)()
        return self.app(environ, start_response)

    def _stream(self, task_id: str) -> Iterator[bytes]:
        seq, progress = 0, None
        while True:
            for event in self.store.events(task_id, after_seq=seq):
                seq = event.seq
                data = json.dumps(event_to_dict(event))
                yield f"id: {seq}\nevent: {event.type.value}\ndata: {data}\n\n".encode()
            task = self.task(task_id)
            if task.progress is not None and task.progress != progress:
                progress = task.progress
                data = json.dumps({"fraction": progress.fraction, "message": progress.message, "at": ts(progress.at)})
                yield f"event: progress\ndata: {data}\n\n".encode()
            if task.status.value in ENDED or not self.steps:
                return
            self.steps.pop(0)()

    def connect(self, target: Target) -> Client:
        transport = httpx.WSGITransport(app=self.wsgi)
        return Client(
            target.url, target.token, transport=transport, retries=Retries(attempts=1), sleep=self.slept.append
        )

    def tq(self, *args: str, stdin: str | None = None) -> Result:
        state = State(connect=self.connect, sleep=self.slept.append)
        return CliRunner().invoke(cli, list(args), input=stdin, obj=state, env={"TQ_TOKEN": "dev-alice"})

    def task(self, task_id: str) -> Task:
        return self.store.get(task_id)

    # ---- what an executor would do
    def claim(self, task_id: str, attempt: int = 1) -> None:
        if attempt > 1:  # out of its backoff first
            self.clock.advance(3600)
            mutate(self.store, self.task(task_id), lambda t: t.promote(self.clock.now()))
        mutate(self.store, self.task(task_id), lambda t: t.claim(attempt, WORKER, self.clock.now(), 30))

    def progress(self, task_id: str, fraction: float, message: str) -> None:
        claim = self.task(task_id).claim_seq
        assert claim is not None
        self.store.report_progress(task_id, claim, Progress(fraction, message, self.clock.now()))

    def succeed(self, task_id: str, log: bytes = b"", attempt: int = 1) -> None:
        self._log(task_id, log)
        mutate(
            self.store,
            self.task(task_id),
            lambda t: t.succeed(attempt, WORKER, {"ok": True}, self.clock.now(), log=RunLog(len(log), LOG_RETENTION_S)),
        )

    def fail(self, task_id: str, log: bytes = b"", attempt: int = 1) -> None:
        self._log(task_id, log)
        error = ErrorInfo("Boom", "it broke")
        mutate(
            self.store,
            self.task(task_id),
            lambda t: t.fail(
                attempt, WORKER, error, self.clock.now(), jitter=0.0, log=RunLog(len(log), LOG_RETENTION_S)
            ),
        )

    def _log(self, task_id: str, body: bytes) -> None:
        claim = self.task(task_id).claim_seq
        assert claim is not None
        if body:
            self.logs.put(task_id, claim, body)


@pytest.fixture(autouse=True)
def no_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No profile file of the host's, no TQ_ variable of the shell's."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("TQ_URL", "TQ_TOKEN", "TQ_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def world(gateway: Any) -> World:
    return World(gateway)


def ok(result: Result) -> str:
    assert (result.exit_code, result.stderr) == (0, ""), (result.output, result.exception)
    return result.stdout


def failed(result: Result, code: int) -> str:
    """The one line on stderr of a command that exited ``code`` and printed nothing on stdout."""
    assert result.exit_code == code, (result.output, result.exception)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def submitted(world: World, *args: str) -> str:
    return ok(world.tq("submit", "echo", "--group", "team-a", *args)).strip()


def failing_once(world: World) -> str:
    """A task whose next steps are an attempt that logs ``one`` and fails, then one that logs ``two`` and succeeds."""
    task_id = submitted(world, "--max-retries", "1")
    world.steps = [
        lambda: world.claim(task_id),
        lambda: world.fail(task_id, b"one\n"),
        lambda: world.claim(task_id, attempt=2),
        lambda: world.succeed(task_id, b"two\n", attempt=2),
    ]
    return task_id


def test_every_command_of_the_contract_is_there() -> None:
    assert set(cli.commands) == {
        *("submit", "get", "ls", "watch", "logs", "runs", "events", "cancel", "redrive", "dlq", "queues", "keys"),
        *("pause", "resume"),  # contract section 8
        "overview",
        "schedules",  # beside GET /v1/schedules (an extension of the contract)
        "completion",
    }
    assert set(cli.commands["dlq"].commands) == {"ls", "redrive"}
    assert set(cli.commands["keys"].commands) == {"create", "list", "revoke"}


def test_ls_completes_every_status_the_api_serves() -> None:
    assert set(STATUSES) == {status.value for status in Status}


# ------------------------------------------------------------------------------------------------- submit
def test_submit_prints_the_id_and_with_json_the_task_with_a_generated_idempotency_key(world: World) -> None:
    assert submitted(world) == "t-1"
    task = json.loads(ok(world.tq("submit", "echo", "-g", "team-a", "--payload", '{"x": 1}', "--json")))
    assert (task["id"], task["status"], task["payload"]) == ("t-2", "queued", {"x": 1})
    assert task["idempotency_key"].startswith("tq-py-")
    assert task["schedule"] is None  # the API's members, as it sends them


def test_submit_payload_from_a_file_and_from_stdin(world: World, tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"from": "file"}')
    assert world.task(submitted(world, "--payload", f"@{tmp_path / 'p.json'}")).payload == {"from": "file"}
    task_id = ok(world.tq("submit", "echo", "-g", "team-a", "--payload", "@-", stdin='{"from": "stdin"}')).strip()
    assert world.task(task_id).payload == {"from": "stdin"}


def test_submit_fields_schedule_and_key(world: World) -> None:
    # --json after every other argument, and before the command
    args = ["--cron", "0 9 * * MON", "--tz", "Europe/Paris", "--priority", "high", "--max-retries", "0"]
    task = json.loads(ok(world.tq("submit", "echo", "-g", "team-a", *args, "--idempotency-key", "k1", "--json")))
    assert task["schedule"]["cron"] == "0 9 * * MON"
    assert task["schedule"]["timezone"] == "Europe/Paris"
    assert (task["priority"], task["retry"]["max_retries"], task["idempotency_key"]) == ("high", 0, "k1")
    again = json.loads(ok(world.tq("--json", "submit", "echo", "-g", "team-a", *args, "--idempotency-key", "k1")))
    assert again["id"] == task["id"]  # replayed, not submitted twice
    every = json.loads(ok(world.tq("submit", "echo", "-g", "team-a", "--every", "60", "--json")))
    assert every["schedule"]["every_s"] == 60


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--payload", "{x"), "is not JSON"),
        (("--payload", "@/no/such/file"), "cannot read /no/such/file"),
        (("--at", "2030-01-01T00:00:00Z", "--every", "60"), "--at and --every cannot be combined"),
        (("--tz", "UTC"), "--tz applies to --cron only"),
        (("--priority", "urgent"), "'urgent' is not one of"),
        (("--bogus",), "No such option"),
    ],
)
def test_bad_input_is_a_usage_error_on_one_line(world: World, args: tuple[str, ...], says: str) -> None:
    line = failed(world.tq("submit", "echo", "--group", "team-a", *args), 2)
    assert line.startswith("tq submit: ")
    assert says in line


def test_a_missing_argument_and_an_unknown_command_are_usage_errors(world: World) -> None:
    assert "Missing option '--group'" in failed(world.tq("submit", "echo"), 2)
    assert "No such command 'frobnicate'" in failed(world.tq("frobnicate"), 2)


# ---------------------------------------------------------------------------------------------- API errors
def test_api_errors_are_exit_3_with_the_problem_on_one_line(world: World) -> None:
    assert failed(world.tq("get", "t-404"), 3).startswith("tq: 404 Not Found")
    line = failed(world.tq("submit", "echo", "--group", "team-b"), 3)
    assert line.startswith("tq: 403 ")
    line = failed(world.tq("submit", "nope", "--group", "team-a"), 3)
    assert line.startswith("tq: 422 ")
    assert "nope" in line
    assert failed(world.tq("--token", "wrong", "queues"), 3).startswith("tq: 401 ")


def test_another_groups_task_is_not_found(world: World) -> None:
    task_id = submitted(world)
    result = CliRunner().invoke(cli, ["--token", "dev-bob", "get", task_id], obj=State(connect=world.connect))
    assert failed(result, 3).startswith("tq: 404 ")


def test_an_unreachable_gateway_is_exit_3() -> None:
    def connect(target: Target) -> Client:
        return Client(target.url, target.token, retries=Retries(attempts=1))

    result = CliRunner().invoke(cli, ["--url", "http://127.0.0.1:9", "queues"], obj=State(connect=connect))
    assert "cannot reach the gateway" in failed(result, 3)


def test_the_command_line_gives_up_on_an_unreachable_gateway_after_two_short_pauses() -> None:
    slept: list[float] = []
    result = CliRunner().invoke(cli, ["--url", "http://127.0.0.1:9", "queues"], obj=State(sleep=slept.append))
    assert "cannot reach the gateway" in failed(result, 3)
    assert slept == [0.5, 1.0]


@pytest.mark.parametrize(
    ("raised", "code", "stderr"),
    [
        (KeyboardInterrupt(), 130, "\ntq: interrupted\n"),  # click's newline after the ^C, then the line
        (RuntimeError("boom"), 3, "tq: unexpected error: RuntimeError: boom\n"),
        (BrokenPipeError(), 0, ""),  # the reader went away (tq ls | head): quietly
    ],
)
def test_interrupts_bugs_and_closed_pipes_never_show_a_traceback(raised: BaseException, code: int, stderr: str) -> None:
    def connect(_target: Target) -> Client:
        raise raised

    result = CliRunner().invoke(cli, ["queues"], obj=State(connect=connect))
    assert (result.exit_code, result.stdout, result.stderr) == (code, "", stderr)


def test_a_bad_profile_file_is_a_usage_error(world: World, tmp_path: Path) -> None:
    (tmp_path / "tq").mkdir()
    (tmp_path / "tq" / "config.toml").write_text("[profiles.default\n")
    assert "not valid TOML" in failed(world.tq("queues"), 2)
    (tmp_path / "tq" / "config.toml").write_text('[profiles.default]\nurl = "http://x"\n')
    assert "no profile 'prod'" in failed(world.tq("--profile", "prod", "queues"), 2)


def test_the_profile_gives_url_and_token(world: World, tmp_path: Path) -> None:
    (tmp_path / "tq").mkdir()
    (tmp_path / "tq" / "config.toml").write_text('[profiles.bob]\nurl = "http://gw"\ntoken = "dev-bob"\n')
    seen: list[Target] = []

    def connect(target: Target) -> Client:
        seen.append(target)
        return world.connect(target)

    result = CliRunner().invoke(cli, ["--profile", "bob", "ls", "--json"], obj=State(connect=connect))
    assert json.loads(ok(result))["items"] == []
    assert seen == [Target("http://gw", "dev-bob")]


# --------------------------------------------------------------------------------------------- reading
def test_get_shows_the_fields_and_json_the_task(world: World) -> None:
    task_id = submitted(world, "--payload", '{"x": 1}')
    text = ok(world.tq("get", task_id))
    assert "queued" in text
    assert '{"x":1}' in text
    assert json.loads(ok(world.tq("get", task_id, "--json")))["payload"] == {"x": 1}


def test_json_is_exactly_what_the_api_answers(world: World) -> None:
    """Timestamps (milliseconds), numbers and members as the server wrote them, not as the client's models would
    write them again (``.120000Z``, ``60.0``)."""
    task_id = submitted(world, "--every", "60")
    api = falcon.testing.TestClient(world.app)
    auth = {"Authorization": "Bearer dev-alice"}
    assert (
        json.loads(ok(world.tq("get", task_id, "--json")))
        == api.simulate_get(f"/v1/tasks/{task_id}", headers=auth).json
    )
    page = api.simulate_get("/v1/tasks", params={"group": "team-a"}, headers=auth).json
    assert json.loads(ok(world.tq("ls", "--group", "team-a", "--json"))) == page


def test_ls_by_name_lists_the_tasks_whose_name_contains_the_text(world: World) -> None:
    api = falcon.testing.TestClient(world.app)
    auth = {"Authorization": "Bearer dev-alice"}
    for name in ("Nightly report", "cleanup"):
        api.simulate_post("/v1/tasks", json={"type": "echo", "group": "team-a", "name": name}, headers=auth)
    page = json.loads(ok(world.tq("ls", "--group", "team-a", "--name", "REPORT", "--json")))
    assert [item["name"] for item in page["items"]] == ["Nightly report"]


def test_ls_is_one_page_as_the_api_answers_it(world: World) -> None:
    ids = [submitted(world) for _ in range(3)]
    page = json.loads(ok(world.tq("ls", "--group", "team-a", "--limit", "2", "--json")))
    assert set(page) == {"items", "next_cursor"}
    assert [item["id"] for item in page["items"]] == ids[:0:-1]
    assert page["next_cursor"]
    rest = json.loads(ok(world.tq("ls", "--limit", "2", "--cursor", page["next_cursor"], "--json")))
    assert ([item["id"] for item in rest["items"]], rest["next_cursor"]) == ([ids[0]], None)
    table = world.tq("ls", "--limit", "2")
    assert table.exit_code == 0
    assert table.stdout.split()[:3] == ["ID", "TYPE", "GROUP"]
    assert ids[2] in table.stdout
    assert ids[0] not in table.stdout
    assert table.stderr == f"more: the same command with --cursor {page['next_cursor']}\n"
    assert world.tq("ls", "--status", "failed").stderr == "no tasks\n"
    assert "0 is not in the range 1<=x<=200" in failed(world.tq("ls", "--limit", "0"), 2)


def test_runs_events_and_logs(world: World) -> None:
    task_id = submitted(world, "--max-retries", "1")
    world.claim(task_id)
    world.fail(task_id, b"first try\n")
    world.claim(task_id, attempt=2)
    world.succeed(task_id, b"second try\n", attempt=2)
    runs = json.loads(ok(world.tq("runs", task_id, "--json")))
    assert [(run["attempt"], run["status"]) for run in runs["items"]] == [(2, "succeeded"), (1, "failed")]
    assert runs["next_cursor"] is None
    assert "succeeded" in ok(world.tq("runs", task_id))
    # the latest run's log unless --run names one
    assert ok(world.tq("logs", task_id)) == "second try\n"
    assert ok(world.tq("logs", task_id, "--run", runs["items"][1]["run_id"])) == "first try\n"
    assert failed(world.tq("logs", task_id, "--run", "9.9"), 3).startswith("tq: 404 ")
    events = json.loads(ok(world.tq("events", task_id, "--json")))["items"]
    assert [event["type"] for event in events][-1] == "succeeded"
    assert [event["seq"] for event in events] == sorted(event["seq"] for event in events)
    assert "retry_scheduled" in ok(world.tq("events", task_id))


def test_logs_json_is_one_document_with_the_run_and_its_log(world: World) -> None:
    task_id = submitted(world)
    world.claim(task_id)
    world.succeed(task_id, b"hello\n")
    run_id = f"{world.task(task_id).run_no}.1"
    expected = {"task_id": task_id, "run_id": run_id, "log": "hello\n"}
    assert json.loads(ok(world.tq("logs", task_id, "--json"))) == expected
    assert json.loads(ok(world.tq("--json", "logs", task_id, "--run", run_id))) == expected


def test_logs_follow_json_is_one_line_per_run(world: World) -> None:
    task_id = failing_once(world)
    lines = ok(world.tq("logs", task_id, "--follow", "--json")).splitlines()
    run_no = world.task(task_id).run_no
    assert [json.loads(line) for line in lines] == [
        {"task_id": task_id, "run_id": f"{run_no}.1", "log": "one\n"},
        {"task_id": task_id, "run_id": f"{run_no}.2", "log": "two\n"},
    ]


def test_logs_of_a_task_without_runs_and_of_a_running_one(world: World) -> None:
    task_id = submitted(world)
    assert failed(world.tq("logs", task_id), 3) == f"tq: task {task_id} has no runs yet"
    world.claim(task_id)
    assert "still running" in failed(world.tq("logs", task_id), 3)


def test_cancel_and_redrive(world: World) -> None:
    task_id = submitted(world)
    assert ok(world.tq("cancel", task_id)) == f"{task_id} cancelled\n"
    assert failed(world.tq("redrive", task_id), 3).startswith("tq: 409 ")
    failing = submitted(world, "--max-retries", "0")
    world.claim(failing)
    world.fail(failing)
    assert json.loads(ok(world.tq("redrive", failing, "--json")))["status"] == "queued"


def test_cancel_by_group_after_a_dry_run_and_tq_cancel_id_still_works(world: World) -> None:
    # Given three queued tasks of team-a
    ids = [submitted(world) for _ in range(3)]
    # A dry run names the two newest and cancels nothing
    assert ok(world.tq("cancel", "--group", "team-a", "--status", "queued", "--limit", "2", "--dry-run")) == (
        f"would cancel 2 tasks:\n  {ids[2]}\n  {ids[1]}\n"
    )
    assert world.task(ids[2]).status.value == "queued"
    # One named by --id is cancelled, with the JSON answer of the API
    done = json.loads(ok(world.tq("cancel", "-g", "team-a", "--id", ids[1], "--type", "echo", "--json")))
    assert done == {"count": 1, "ids": [ids[1]], "dry_run": False}
    assert ok(world.tq("cancel", ids[0])) == f"{ids[0]} cancelled\n"
    assert ok(world.tq("cancel", "-g", "team-a")) == f"cancelled 1 task:\n  {ids[2]}\n"
    assert ok(world.tq("cancel", "-g", "team-a")) == "cancelled 0 tasks\n"
    assert failed(world.tq("cancel", "--group", "team-b"), 3).startswith("tq: 403 ")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "give a TASK_ID, or --group"),
        (("t-1", "--dry-run"), "give a TASK_ID, or --group"),
        (("t-1", "--group", "team-a"), "name tasks with --id"),
        (("--group", "team-a", "--limit", "0"), "0 is not in the range"),
    ],
)
def test_cancel_needs_one_id_or_a_group(world: World, args: tuple[str, ...], says: str) -> None:
    line = failed(world.tq("cancel", *args), 2)
    assert line.startswith("tq cancel: ")
    assert says in line


def test_pause_and_resume(world: World) -> None:
    # Given an every-minute task whose first run is running
    task_id = submitted(world, "--every", "60")
    world.claim(task_id)
    # When it is paused, the attempt goes on, and the task is paused once it ends
    assert ok(world.tq("pause", task_id)) == f"{task_id} running (paused once this attempt ends)\n"
    world.succeed(task_id)
    assert json.loads(ok(world.tq("get", task_id, "--json")))["status"] == "paused"
    # And resumed, it waits for its next slot; resuming again is an API error
    assert ok(world.tq("resume", task_id)) == f"{task_id} scheduled\n"
    assert failed(world.tq("resume", task_id), 3).startswith("tq: 409 ")
    # And a one-shot task cannot be paused
    assert "repeating" in failed(world.tq("pause", submitted(world), "--json"), 3)
    # And a task whose run is only queued is paused at once
    assert ok(world.tq("pause", submitted(world, "--every", "60"))).endswith(" paused\n")


def test_dlq_ls_and_redrive(world: World) -> None:
    ids = []
    for _ in range(2):
        ids.append(submitted(world, "--max-retries", "0"))
        world.claim(ids[-1])
        world.fail(ids[-1])
    page = json.loads(ok(world.tq("dlq", "ls", "--group", "team-a", "--json")))
    assert [item["id"] for item in page["items"]] == ids[::-1]
    assert all(ids_ in ok(world.tq("dlq", "ls", "--group", "team-a")) for ids_ in ids)
    dry = json.loads(ok(world.tq("dlq", "redrive", "--group", "team-a", "--dry-run", "--json")))
    assert (dry["count"], sorted(dry["ids"]), dry["dry_run"]) == (2, sorted(ids), True)
    assert ok(world.tq("dlq", "redrive", "-g", "team-a", "--id", ids[0], "--dry-run")) == (
        f"would redrive 1 task:\n  {ids[0]}\n"
    )
    assert world.task(ids[0]).status.value == "failed"
    assert ok(world.tq("dlq", "redrive", "-g", "team-a", "--limit", "1")).startswith("redrove 1 task:")


def test_dlq_by_type_and_schedules(world: World) -> None:
    # Given a dead letter of type echo, an every-minute task and a task that just runs
    dead = submitted(world, "--max-retries", "0")
    world.claim(dead)
    world.fail(dead)
    every = submitted(world, "--every", "60")
    submitted(world)
    # Then the dead letters filter by type, and a redrive by a type that matches none redrives nothing
    assert [t["id"] for t in json.loads(ok(world.tq("dlq", "ls", "--type", "echo", "--json")))["items"]] == [dead]
    assert json.loads(ok(world.tq("dlq", "ls", "--type", "other", "--json")))["items"] == []
    none = json.loads(ok(world.tq("dlq", "redrive", "-g", "team-a", "--type", "other", "--json")))
    assert (none["count"], world.task(dead).status.value) == (0, "failed")
    # And tq schedules lists the repeating task only, with its schedule
    listed = json.loads(ok(world.tq("schedules", "--group", "team-a", "--json")))
    assert [t["id"] for t in listed["items"]] == [every]
    table = ok(world.tq("schedules"))
    assert table.split()[:9] == [
        "ID",
        "TYPE",
        "GROUP",
        "STATUS",
        "ATTEMPTS",
        "PRIORITY",
        "CREATED_AT",
        "SCHEDULE",
        "NEXT_RUN_AT",
    ]
    assert every in table
    assert json.loads(ok(world.tq("schedules", "--type", "other", "--json")))["items"] == []


def test_queues(world: World) -> None:
    listed = json.loads(ok(world.tq("queues", "--json")))
    assert set(listed) == {"queues"}
    table = ok(world.tq("queues"))
    assert table.split()[:6] == ["NAME", "POOL", "PRIORITY", "DEPTH", "IN_FLIGHT", "DLQ_DEPTH"]


def test_overview(world: World) -> None:
    seen = json.loads(ok(world.tq("overview", "--json")))
    assert set(seen) == {"at", "pools", "replicas", "throughput", "scheduler", "dead_letters"}
    assert seen["dead_letters"] == {"team-a": 0}
    shown = ok(world.tq("overview"))
    assert "finished (5 min)  0 succeeded, 0 failed" in shown
    assert "dead letters      team-a 0" in shown
    assert shown.split("\n")[-5].split() == [
        "POOL",
        "PRIORITY",
        "DEPTH",
        "IN_FLIGHT",
        "OLDEST_AGE_S",
        "DLQ_DEPTH",
        "EXECUTORS",
    ]


# ------------------------------------------------------------------------------------------ following
def test_watch_follows_the_task_in_plain_lines_and_prints_each_attempts_log(world: World) -> None:
    task_id = submitted(world)
    world.steps = [
        lambda: world.claim(task_id),
        lambda: world.progress(task_id, 0.5, "half way"),
        lambda: world.succeed(task_id, b"done\n"),
    ]
    lines = ok(world.tq("watch", task_id)).splitlines()
    assert lines[0] == f"{task_id} echo queued (attempt 0)"
    assert f"{task_id} echo running (attempt 1)" in lines
    assert "progress 50% half way" in lines
    assert lines[-3:] == [
        f"{task_id} echo succeeded (attempt 1)",
        f"--- log of run {world.task(task_id).run_no}.1 (attempt 1, succeeded)",
        "done",
    ]


def test_on_a_terminal_watch_draws_the_live_panel(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws as on a terminal
    task_id = submitted(world)
    world.steps = [
        lambda: world.claim(task_id),
        lambda: world.progress(task_id, 0.5, "half [way]"),
        lambda: world.succeed(task_id, b"done\n"),
    ]
    screen = ok(world.tq("watch", task_id))
    assert "\x1b[" in screen  # drawn, not plain lines
    assert "half [way]" in screen  # the handler's message as it is (no markup)
    assert "--- log of run" in screen
    assert "done" in screen
    assert "succeeded" in screen


def test_submit_wait_json_prints_only_the_final_task_and_exit_1_when_it_failed(world: World) -> None:
    world.steps = [lambda: world.claim("t-1"), lambda: world.fail("t-1", b"oops\n")]
    result = world.tq("submit", "echo", "-g", "team-a", "--max-retries", "0", "--wait", "--json")
    assert result.exit_code == 1
    task = json.loads(result.stdout)
    assert (task["id"], task["status"], task["last_error"]["type"]) == ("t-1", "failed", "Boom")
    world.steps = [lambda: world.claim("t-2"), lambda: world.succeed("t-2")]
    done = json.loads(ok(world.tq("submit", "echo", "-g", "team-a", "--wait", "--json")))
    assert (done["status"], done["result"]) == ("succeeded", {"ok": True})


def test_without_a_stream_it_follows_by_waiting_reads(world: World) -> None:
    # Given a gateway without /stream: each read of the task moves it on
    world.streams = False
    task_id = submitted(world)
    world.steps = [lambda: None, lambda: (world.claim(task_id), world.succeed(task_id, b"waited\n"))]
    lines = ok(world.tq("watch", task_id)).splitlines()
    assert lines[0] == f"{task_id} echo queued (attempt 0)"
    assert lines[-2:] == [f"--- log of run {world.task(task_id).run_no}.1 (attempt 1, succeeded)", "waited"]


def test_watch_of_a_cancelled_task_exits_1(world: World) -> None:
    task_id = submitted(world)
    ok(world.tq("cancel", task_id))
    result = world.tq("watch", task_id)
    assert result.exit_code == 1
    assert result.stdout == f"{task_id} echo cancelled (attempt 0)\n"


def test_logs_follow_prints_each_attempts_log_as_it_ends(world: World) -> None:
    task_id = failing_once(world)
    assert ok(world.tq("logs", task_id, "--follow")) == "one\ntwo\n"


# ------------------------------------------------------------------------------------- the rest
def test_completion_prints_clicks_script(world: World) -> None:
    assert "_TQ_COMPLETE=bash_complete" in ok(world.tq("completion", "bash"))
    assert "compdef" in ok(world.tq("completion", "zsh"))
    assert "complete --no-files --command tq" in ok(world.tq("completion", "fish"))
    assert failed(world.tq("completion", "tcsh"), 2).startswith("tq completion: ")
    # and the script's callback completes commands and --status values from the same definitions
    env = {"_TQ_COMPLETE": "bash_complete", "COMP_WORDS": "tq ls --status su", "COMP_CWORD": "3"}
    assert CliRunner().invoke(cli, [], env=env).stdout == "plain,succeeded\n"


def test_keys_delegates_to_the_gateways_keys_cli(world: World) -> None:
    result = world.tq("keys", "create", "--user", "x")
    assert result.exit_code == 2
    assert result.stderr == "tq keys: give at least one --group (or --admin) (see --help)\n"


@pytest.mark.parametrize("args", [("keys", "list", "--json"), ("--json", "keys", "list")])
def test_keys_refuses_json_on_one_line(world: World, args: tuple[str, ...]) -> None:
    assert failed(world.tq(*args), 2) == (
        "tq keys list: --json is not available: tq keys prints text, as tq-keys does (see 'tq keys list --help')"
    )


# ------------------------------------------------------------------- control characters on a terminal
HOSTILE = b"\x1b]52;c;cHduZWQ=\x07\x1b]0;title\x07\x1b[2Jred\tok\rno\n\xc2\x9b31m\n"
SHOWN = "\\x1b]52;c;cHduZWQ=\\x07\\x1b]0;title\\x07\\x1b[2Jred\tok\\x0dno\n\\x9b31m\n"


def test_logs_on_a_terminal_show_control_characters_escaped_and_a_pipe_gets_them_as_they_are(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = submitted(world)
    world.claim(task_id)
    world.succeed(task_id, HOSTILE)
    assert ok(world.tq("logs", task_id)) == HOSTILE.decode()
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # stdout a terminal, as rich sees it
    assert ok(world.tq("logs", task_id)) == SHOWN
    assert json.loads(ok(world.tq("logs", task_id, "--json")))["log"] == HOSTILE.decode()


def test_the_live_view_shows_logs_and_progress_messages_escaped(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    task_id = submitted(world)
    world.steps = [
        lambda: world.claim(task_id),
        lambda: world.progress(task_id, 0.5, "half\x1b]0;owned\x07"),
        lambda: world.succeed(task_id, HOSTILE),
    ]
    screen = ok(world.tq("watch", task_id))
    assert "\\x1b]52;c;cHduZWQ=\\x07" in screen
    assert "half\\x1b]0;owned\\x07" in screen
    assert not any(raw in screen for raw in ("\x1b]", "\x07", "\x1b[2J", "\x9b"))
    monkeypatch.delenv("TTY_COMPATIBLE")  # off a terminal, plain lines: the log as it is
    assert ok(world.tq("watch", task_id)).endswith(HOSTILE.decode())


def test_server_strings_in_tables_and_errors_are_shown_escaped(world: World) -> None:
    task_id = submitted(world, "--payload", json.dumps({"note": "\x9b2J"}))
    assert "\\x9b2J" in ok(world.tq("get", task_id))
    line = failed(world.tq("get", "t-1\x1b]0;x\x07"), 3)
    assert "\x1b" not in line
    assert "t-1\\x1b]0;x\\x07" in line
