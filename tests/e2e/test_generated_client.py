"""A third-party client generated from the live ``/openapi.json`` (``openapi-python-client``, in ``.venv-codegen``)
submits, reads and lists tasks: the document stays usable by generators, without warnings, grouped by tag."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import TOKENS
from tqdev.stack import Stack

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
#: The generator's own virtual environment (``make test-core-beside`` builds it): it brings its own ruff and
#: typer, and runs the generated client too (httpx, attrs, python-dateutil).
CODEGEN_BIN = REPO / ".venv-codegen" / "bin"

#: Run with the generated package on the path; prints what it saw as JSON.
USE_IT = textwrap.dedent(
    """
    import json, sys, time
    from tq_api import AuthenticatedClient
    from tq_api.api.tasks import get_task, list_tasks, submit_task, submit_tasks
    from tq_api.models import SubmitBatch, SubmitTask, Task, TaskPage

    api = AuthenticatedClient(base_url=sys.argv[1], token=sys.argv[2], raise_on_unexpected_status=True)
    body = SubmitTask.from_dict({"type": "echo", "group": "team-a", "payload": {"from": "generated"}})
    created = submit_task.sync_detailed(client=api, body=body)
    task = created.parsed
    assert isinstance(task, Task), created
    deadline = time.monotonic() + 30
    while (read := get_task.sync(task.id, client=api)).status.value != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert isinstance(read, Task), read
    page = list_tasks.sync(client=api, group="team-a", limit=5)
    assert isinstance(page, TaskPage), page
    batch = submit_tasks.sync(client=api, body=SubmitBatch(tasks=[body, SubmitTask(type_="echo", group="team-b")]))
    print(json.dumps({
        "created": created.status_code.value,
        "status": read.status.value,
        "result": read.result,
        "finished": read.finished_at.isoformat() if read.finished_at else None,
        "listed": [t.id for t in page.items],
        "batch": [[type(item).__name__, int(item.status)] for item in batch.items],
        "id": task.id,
    }))
    """
)


@pytest.fixture(scope="module")
def generated(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client generated from the running gateway's document: the directory that holds package ``tq_api``."""
    assert (CODEGEN_BIN / "openapi-python-client").exists(), "no .venv-codegen: run `make .venv-codegen/.installed`"
    where = tmp_path_factory.mktemp("codegen")
    done = subprocess.run(
        [
            str(CODEGEN_BIN / "openapi-python-client"),
            "generate",
            "--url",
            f"{stack.url}/openapi.json",
            "--meta",
            "none",
            "--output-path",
            str(where / "tq_api"),
        ],
        # As from its activated venv: the generator's post-hooks run its own ruff.
        env={**os.environ, "PATH": f"{CODEGEN_BIN}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in (done.stdout + done.stderr).lower(), done.stdout + done.stderr
    return where


def test_operations_are_grouped_by_tag(generated: Path) -> None:
    modules = {path.name for path in (generated / "tq_api" / "api").iterdir() if path.is_dir()}
    assert modules == {"tasks", "runs", "dead_letters", "queues", "health"}
    assert {path.stem for path in (generated / "tq_api" / "api" / "tasks").glob("*.py")} >= {
        "submit_task",
        "submit_tasks",
        "get_task",
        "list_tasks",
    }


def test_the_generated_client_submits_reads_and_lists_tasks(generated: Path, stack: Stack) -> None:
    ran = subprocess.run(
        [str(CODEGEN_BIN / "python"), "-c", USE_IT, stack.url, TOKENS["alice"]],
        cwd=generated,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},  # its own venv only
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    seen = json.loads(ran.stdout.strip().splitlines()[-1])
    assert (seen["created"], seen["status"], seen["result"]) == (201, "succeeded", {"from": "generated"})
    assert seen["finished"] is not None
    assert seen["id"] in seen["listed"]
    assert seen["batch"] == [["BatchSubmitted", 201], ["BatchRefused", 403]]
