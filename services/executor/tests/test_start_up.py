"""An executor configured with no task types, or with a script allow-list that cannot work, refuses to start
with one clear line on stderr (no traceback) and a non-zero exit, before it connects anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

#: The executor's entry point, run as its console script does (also where no console script is installed: Pants).
EXECUTOR = [sys.executable, "-c", "import sys; from tq_executor.main import main; sys.exit(main())"]


def start(tmp_path: Path, *command: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TQ_")}
    # An endpoint nothing listens on: a refusal must come before any connection.
    clean |= {"TQ_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", **env}
    return subprocess.run([*EXECUTOR, *command], env=clean, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, "no task types configured: set TQ_HANDLER_MODULES"),
        ({"TQ_HANDLER_MODULES": " , "}, "no task types configured"),
        ({"TQ_SCRIPT_ALLOW": "echo,sleep,true"}, "TQ_SCRIPT_ALLOW: the script allow-list is not JSON"),
        ({"TQ_SCRIPT_ALLOW": '{"date": {"args": ["("]}}'}, "not a regular expression"),
        ({"TQ_SCRIPTS_FILE": "/nonexistent/scripts.json"}, "TQ_SCRIPTS_FILE cannot be read"),
        ({"TQ_HANDLER_MODULES": "tq_executor.demo", "TQ_POOL": "GPU"}, "TQ_POOL: String should match pattern"),
    ],
)
def test_an_executor_that_cannot_work_refuses_to_start_in_one_line(
    tmp_path: Path, env: dict[str, str], words: str
) -> None:
    done = start(tmp_path, **env)
    assert done.returncode == 2
    assert words in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="script uids are only taken as root")
def test_a_script_uid_range_holding_an_account_is_refused(tmp_path: Path) -> None:
    # every process of a script uid is killed: a range with a real account (here nobody, 65534) would kill its own
    done = start(tmp_path, TQ_SCRIPT_ALLOW='{"echo": {}}', TQ_SCRIPT_UID_BASE="65530", TQ_SCRIPT_UID_COUNT="10")
    assert done.returncode == 2
    assert "uids 65530..65539 must have no passwd entry, but these have one: nobody (65534)" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


BAD_MODULES = {
    "bad_retries": 'from tq import handler\n\n@handler("x", max_retries=99)\ndef x(ctx):\n    return None\n',
    "twice": 'from tq import handler\n\n@handler("y")\ndef a(ctx):\n    return None\n\n'
    '@handler("y")\ndef b(ctx):\n    return None\n',
    "broken_import": "import no_such_library_here\n",
}


@pytest.mark.parametrize("command", [[], ["register-types"]])
@pytest.mark.parametrize(
    ("module", "words"),
    [
        ("no_such_handlers", "handler module 'no_such_handlers' does not import: ModuleNotFoundError"),
        ("bad_retries", "handler module 'bad_retries' does not import: "),
        ("twice", "handler module 'twice' does not import: ValueError: task type 'y' is registered twice"),
        ("broken_import", "handler module 'broken_import' does not import: ModuleNotFoundError"),
    ],
)
def test_handler_modules_that_do_not_load_are_refused_in_one_line(
    tmp_path: Path, module: str, words: str, command: list[str]
) -> None:
    for name, source in BAD_MODULES.items():
        (tmp_path / f"{name}.py").write_text(source)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    done = start(tmp_path, *command, TQ_HANDLER_MODULES=module, PYTHONPATH=path)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("tq-executor: refusing to start: ")
    assert words in line
    assert "Traceback" not in done.stderr
