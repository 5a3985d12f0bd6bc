"""The ``tq`` command line end to end (issue 17's acceptance): the installed command, run as a subprocess
against a real stack, as a user or a script would.

The command is ``tq`` beside the test's interpreter (``.venv/bin/tq``), or ``python -m tq.cli`` through that
interpreter while the console script is not installed yet; either imports the sources on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKENS
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

INSTALLED = Path(sys.executable).parent / "tq"
TQ = [str(INSTALLED)] if INSTALLED.exists() else [sys.executable, "-m", "tq.cli"]

Tq = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def tq(stack: Stack, tmp_path: Path) -> Tq:
    """``tq("ls", "--json")``: run the command as alice against the stack (no profile file of the host's)."""

    def run(*args: str, stdin: str | None = None, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        env = {
            **_base_env(),
            "TQ_URL": stack.url,
            "TQ_TOKEN": TOKENS["alice"],
            "XDG_CONFIG_HOME": str(tmp_path),
            "COLUMNS": "200",
        }
        return subprocess.run(
            [*TQ, *args], input=stdin, capture_output=True, text=True, env=env, timeout=timeout_s, check=False
        )

    return run


def _base_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("TQ_")}


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert (result.returncode, result.stderr) == (0, ""), result
    return json.loads(result.stdout)


def test_submit_wait_json_prints_the_succeeded_task_and_exits_0(tq: Tq) -> None:
    # When a user submits an echo task and waits for it
    result = tq("submit", "echo", "--group", "team-a", "--payload", '{"x":1}', "--wait", "--json")
    # Then the one JSON document on stdout is the succeeded task with its result
    task = ok_json(result)
    assert (task["status"], task["result"], task["group"]) == ("succeeded", {"x": 1}, "team-a")
    # and the task lists among the group's succeeded tasks, as the HTTP API pages them
    page = ok_json(tq("ls", "--group", "team-a", "--status", "succeeded", "--json"))
    assert set(page) == {"items", "next_cursor"}
    assert task["id"] in [item["id"] for item in page["items"]]
    assert {item["status"] for item in page["items"]} == {"succeeded"}


def test_a_task_that_fails_exits_1_and_lands_in_the_dead_letters(tq: Tq) -> None:
    # Given a script that fails, with no retry, submitted from stdin and awaited (plain lines: not a terminal)
    body = json.dumps({"argv": ["false"]})
    result = tq("submit", "script", "-g", "team-a", "--payload", "@-", "--max-retries", "0", "--wait", stdin=body)
    # Then the command exits 1 after showing the attempt and its end
    assert result.returncode == 1, result
    lines = result.stdout.splitlines()
    task_id = lines[0].split()[0]
    assert "failed" in lines[-1]
    # and the dead letters list it; a dry run would redrive it and changes nothing
    listed = tq("dlq", "ls", "--group", "team-a")
    assert listed.returncode == 0, listed
    assert task_id in listed.stdout
    dry = ok_json(tq("dlq", "redrive", "--group", "team-a", "--dry-run", "--json"))
    assert task_id in dry["ids"]
    assert dry["count"] == len(dry["ids"])
    assert ok_json(tq("get", task_id, "--json"))["status"] == "failed"
    # and `tq redrive` queues it again
    assert tq("redrive", task_id).stdout.split()[:2] in (
        [task_id, "queued"],
        [task_id, "running"],
        [task_id, "failed"],
    )


def test_logs_runs_and_events_of_a_script(tq: Tq) -> None:
    # Given a script task that printed a line
    body = json.dumps({"argv": ["echo", "hello", "from", "tq"]})
    task = ok_json(tq("submit", "script", "--group", "team-a", "--payload", body, "--wait", "--json"))
    # Then `tq logs` prints the latest run's log as it is
    logs = tq("logs", task["id"])
    assert (logs.returncode, logs.stdout) == (0, "hello from tq\n"), logs
    # `tq runs` shows one succeeded run, and its JSON is the API's page
    runs = ok_json(tq("runs", task["id"], "--json"))
    assert [(run["attempt"], run["status"]) for run in runs["items"]] == [(1, "succeeded")]
    table = tq("runs", task["id"])
    assert "succeeded" in table.stdout
    assert runs["items"][0]["run_id"] in table.stdout
    # `tq logs --run` names the run
    assert tq("logs", task["id"], "--run", runs["items"][0]["run_id"]).stdout == "hello from tq\n"
    # and `--json` gives the run and its log as one document
    run_id = runs["items"][0]["run_id"]
    assert ok_json(tq("logs", task["id"], "--json")) == {
        "task_id": task["id"],
        "run_id": run_id,
        "log": "hello from tq\n",
    }
    # `tq events` shows the history in order
    events = ok_json(tq("events", task["id"], "--json"))["items"]
    types = [event["type"] for event in events]
    assert (types[0], types[-1]) == ("submitted", "succeeded")
    assert "claimed" in types
    assert "claimed" in tq("events", task["id"]).stdout


def test_cancel_a_scheduled_task(tq: Tq) -> None:
    at = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    task_id = tq("submit", "echo", "--group", "team-a", "--at", at).stdout.strip()
    assert ok_json(tq("get", task_id, "--json"))["status"] == "scheduled"
    cancelled = tq("cancel", task_id)
    assert (cancelled.returncode, cancelled.stdout) == (0, f"{task_id} cancelled\n"), cancelled
    # a watch of an ended task shows it and exits 1 (cancelled)
    watched = tq("watch", task_id)
    assert watched.returncode == 1
    assert "cancelled" in watched.stdout


def test_queues_table_and_json(tq: Tq) -> None:
    listed = ok_json(tq("queues", "--json"))["queues"]
    assert {queue["priority"] for queue in listed} >= {"high", "normal", "low"}
    table = tq("queues")
    assert table.returncode == 0
    assert all(queue["name"] in table.stdout for queue in listed)


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("submit", "echo", "--group", "team-a", "--no-such-flag"), 2, "no such option"),
        (("submit", "echo", "--group", "team-a", "--payload", "{x"), 2, "not JSON"),
        (("submit", "echo", "--group", "team-a", "--payload", "@/no/such/file"), 2, "cannot read"),
        (("get", "01hzzzzzzzzzzzzzzzzzzzzzzz"), 3, "404"),
        (("submit", "echo", "--group", "team-b"), 3, "403"),
        (("--url", "http://127.0.0.1:9", "queues"), 3, "cannot reach"),
    ],
)
def test_errors_are_one_line_with_the_contract_exit_code(tq: Tq, args: tuple[str, ...], code: int, says: str) -> None:
    result = tq(*args)
    assert result.returncode == code, result
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert says.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_tq_keys_makes_a_key_the_api_accepts(stack: Stack, tq: Tq) -> None:
    # Given `tq keys create` run with the gateway's settings (it writes to the stack's table directly)
    env = stack.env("gateway")
    made = subprocess.run(
        [*TQ, "keys", "create", "--user", "cli-user", "--group", "team-a"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made
    token = made.stdout.strip()
    key_id = made.stderr.split()[2]
    # Then the token authenticates, and `tq keys list` lists the key
    assert tq("--token", token, "ls", "--group", "team-a", "--limit", "1").returncode == 0
    listed = subprocess.run([*TQ, "keys", "list"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert key_id in listed.stdout


def test_wait_shows_each_attempt_and_its_log_as_plain_lines_off_a_terminal(tq: Tq) -> None:
    # Given a task that fails once, then succeeds, awaited with stdout on a pipe
    result = tq("submit", "flaky", "--group", "team-a", "--payload", '{"fail_times": 1}', "--wait")
    assert (result.returncode, result.stderr) == (0, ""), result
    lines = result.stdout.splitlines()
    task_id = lines[0].split()[0]
    # Then it showed the retry, both attempts' logs once each attempt had ended, and the end on the second attempt
    # (a status line is the task as read after each event: `retrying` lasts the backoff, which full jitter can
    # make ~0 s, so whether a line catches it is a race; the first attempt's failed run below is not)
    status_lines = [line for line in lines if line.startswith(task_id)]
    assert status_lines[-1].split()[2:4] == ["succeeded", "(attempt"], status_lines
    assert status_lines[-1].split()[4].startswith("2)"), status_lines
    headers = [line for line in lines if line.startswith("--- log of run")]
    assert [header.split(" (", 1)[1] for header in headers] == [
        "attempt 1, failed) (empty)",
        "attempt 2, succeeded) (empty)",
    ], result.stdout
    # and `logs --follow` of the ended task prints each attempt's log and ends at once
    assert tq("logs", task_id, "--follow").returncode == 0
