"""What an executor registers in the catalog: its pool, and each handler's declared defaults and payload schema."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

import tq
from tq_executor.main import served_types
from tq_executor.settings import ExecutorSettings
from tqcore.domain.scripts import SCRIPT_TYPE

pytestmark = pytest.mark.unit


class Size(BaseModel):
    width: int


@tq.handler("served-types.resize", max_retries=2, timeout_s=30, priority="low", payload=Size)
def resize(ctx: tq.TaskContext) -> dict[str, int]:
    return {}


def test_each_type_is_registered_in_the_executors_pool_with_what_its_handler_declares() -> None:
    settings = ExecutorSettings(pool="media")
    records = {info.name: info for info in served_types(settings)}
    resize_info = records["served-types.resize"]
    assert (resize_info.pool, dict(resize_info.defaults)) == (
        "media",
        {"retry": {"max_retries": 2}, "timeout_s": 30, "priority": "low"},
    )
    assert resize_info.payload_schema == Size.model_json_schema()
    assert {info.pool for info in records.values()} == {"media"}


def test_the_script_type_carries_the_allow_list() -> None:
    import tq_executor.script  # noqa: F401 - registers the script type

    settings = ExecutorSettings(script_allow='{"echo": {}}')
    (script,) = [info for info in served_types(settings) if info.name == SCRIPT_TYPE]
    assert script.spec == settings.script_spec()
    assert script.pool == "default"
