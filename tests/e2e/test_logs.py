"""Every line the services write is one JSON object, with trace and task fields (issue 6, acceptance 4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TOKENS, running_stack, wait_for_status

pytestmark = pytest.mark.e2e

#: The service logs of a local stack (the demo handlers' execution log is a test fixture, not a service's).
NOT_SERVICE_LOGS = {"executions.log"}
NO_RETRY = {"max_retries": 0}


def service_lines(run_dir: Path) -> dict[str, list[str]]:
    """Every line of every service log in the run directory, by file name."""
    return {
        path.name: path.read_text().splitlines()
        for path in sorted(run_dir.glob("*.log"))
        if path.name not in NOT_SERVICE_LOGS
    }


def test_every_line_is_json_with_trace_ids_in_spans_and_task_fields_in_attempts(emulator: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {"TQ_TRACES_EXPORTER": "console", "OTEL_BSP_SCHEDULE_DELAY": "200", "TQ_HEARTBEAT_S": "1"}
    # Given a stack whose spans go to the console (so spans, too, land in the service logs)
    with running_stack(emulator, run_dir, env=env) as stack, client_of(stack.url, "alice") as alice:
        # When tasks succeed, fail for good, time out and get cancelled, and requests go wrong
        ok = submit(alice, {"type": "echo", "payload": {"x": 1}})
        doomed = submit(alice, {"type": "flaky", "payload": {"fail_times": 5}, "retry": NO_RETRY})
        slow = submit(alice, {"type": "sleep", "payload": {"seconds": 30}, "timeout_s": 1, "retry": NO_RETRY})
        cancelled = submit(alice, {"type": "sleep", "payload": {"seconds": 60}})
        wait_for_status(alice, cancelled, {"running"}, timeout_s=20)
        alice.delete(f"/v1/tasks/{cancelled}").raise_for_status()
        assert alice.get("/v1/tasks/no-such-task").status_code == 404
        assert alice.post("/v1/tasks", content=b"{not json").status_code == 400
        for task_id in (ok, doomed, slow, cancelled):
            wait_for_status(alice, task_id, {"succeeded", "failed", "cancelled"}, timeout_s=30)
    # (the stack has stopped: shutdown lines are in the logs too)

    # Then every line of every service log parses as one JSON object with the common fields
    logs = service_lines(run_dir)
    assert {"gateway.log", "scheduler.log", "reaper.log", "executor-1.log"} <= set(logs)
    records: list[dict[str, Any]] = []
    for name, lines in logs.items():
        assert lines, f"{name} is empty"
        for n, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"{name}:{n} is not JSON: {line[:200]!r}")
            assert isinstance(record, dict), f"{name}:{n}"
            records.append(record)
    spans = [r for r in records if "context" in r and "kind" in r]  # the console exporter's span lines
    lines = [r for r in records if r not in spans]
    for record in lines:
        assert {"time", "level", "service", "message"} <= set(record), record
    # ... the gateway's own start-up (gunicorn's master) is JSON too
    assert any(r["service"] == "gateway" and "Listening at" in r["message"] for r in lines)

    # ... a line logged inside an attempt names the task, the attempt and the span it was logged in
    started = [r for r in lines if r["message"] == "attempt started"]
    assert {r["task_id"] for r in started} == {ok, doomed, slow, cancelled}
    span_ids = {(hex_id(s["context"]["trace_id"]), hex_id(s["context"]["span_id"])) for s in spans}
    for record in started:
        assert record["attempt"] == 1
        assert (record["trace_id"], record["span_id"]) in span_ids, record
    # ... and every line logged while a span was active says which (the spans' own ids are known)
    traced = [r for r in lines if "trace_id" in r]
    assert len(traced) >= len(started)
    assert all(len(r["trace_id"]) == 32 and len(r["span_id"]) == 16 for r in traced)


def hex_id(value: str) -> str:
    """A console span's id (``0x…``) as log lines write it."""
    return value.removeprefix("0x")


def client_of(url: str, user: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS[user]}"}, timeout=10)


def submit(api: httpx.Client, body: dict[str, Any]) -> str:
    task_id: str = api.post("/v1/tasks", json={"group": "team-a", **body}).raise_for_status().json()["id"]
    return task_id
