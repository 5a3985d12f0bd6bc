"""The handler registry: functions and set-up-once classes by type name."""

from __future__ import annotations

from typing import Any

import pytest

from tq_executor.handlers import HandlerRegistry, TaskContext

pytestmark = pytest.mark.unit


class Stateful:
    def __init__(self) -> None:
        self.ready = False

    def setup(self) -> None:
        self.ready = True

    def teardown(self) -> None:
        self.ready = False

    def __call__(self, ctx: TaskContext) -> Any:
        return self.ready


def ctx() -> TaskContext:
    return TaskContext("t", "x", "g", 1, {}, 10, "h:1")


def test_class_handlers_are_instantiated_once_set_up_and_torn_down() -> None:
    handlers = HandlerRegistry()
    handlers.register("s", Stateful)
    handler = handlers.get("s")
    assert handler is not None
    assert handler(ctx()) is False
    handlers.setup()
    assert handler(ctx()) is True
    handlers.teardown()
    assert handler(ctx()) is False


def test_registering_a_type_twice_is_refused() -> None:
    handlers = HandlerRegistry()
    handlers.handler("echo")(lambda c: None)
    with pytest.raises(ValueError, match="twice"):
        handlers.register("echo", lambda c: None)
    assert handlers.types == ["echo"]
