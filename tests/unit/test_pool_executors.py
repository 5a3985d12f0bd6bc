"""``make run``'s executors of other pools (``TQ_POOL_EXECUTORS``), and its one-line refusal of a bad value."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import tqdev.run  # noqa: F401 - run below as a program, by module name
from tqdev.stack import pool_executors

pytestmark = pytest.mark.unit


def test_each_pool_gets_one_executor_of_its_modules() -> None:
    assert pool_executors(" gpu = a.tasks , b.tasks ; batch=c ;") == [
        {"TQ_POOL": "gpu", "TQ_HANDLER_MODULES": "a.tasks,b.tasks"},
        {"TQ_POOL": "batch", "TQ_HANDLER_MODULES": "c"},
    ]
    assert pool_executors("") == []


@pytest.mark.parametrize("spec", ["gpu", "GPU=a", "default=a", "gpu=", "=a"])
def test_a_bad_value_is_refused_before_anything_starts_in_one_line(spec: str) -> None:
    with pytest.raises(ValueError, match="TQ_POOL_EXECUTORS"):
        pool_executors(spec)
    env = {**os.environ, "TQ_POOL_EXECUTORS": spec, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    done = subprocess.run(
        [sys.executable, "-m", "tqdev.run"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("tq: TQ_POOL_EXECUTORS:")
