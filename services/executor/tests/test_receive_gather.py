"""When the consumer receives: at once with half its prefetch free, else after a free slot waited a little."""

from __future__ import annotations

import pytest

from tq_executor.broker import ReceiveGather

pytestmark = pytest.mark.unit


def test_an_idle_or_half_free_consumer_receives_at_once() -> None:
    gather = ReceiveGather(prefetch=4, wait_s=0.05)
    assert gather.ready(4, now=0.0)
    assert gather.ready(2, now=0.0)


def test_a_busy_consumer_never_receives() -> None:
    gather = ReceiveGather(prefetch=4, wait_s=0.05)
    assert not gather.ready(0, now=0.0)
    assert not gather.ready(0, now=10.0)


def test_one_free_slot_waits_for_company_then_receives_alone() -> None:
    gather = ReceiveGather(prefetch=4, wait_s=0.05)
    assert not gather.ready(1, now=10.0)
    assert not gather.ready(1, now=10.04)
    assert gather.ready(1, now=10.05)  # waited long enough: one message rather than none
    assert not gather.ready(1, now=10.06)  # the next free slot waits afresh


def test_a_second_free_slot_ends_the_wait() -> None:
    gather = ReceiveGather(prefetch=4, wait_s=0.05)
    assert not gather.ready(1, now=0.0)
    assert gather.ready(2, now=0.01)
    assert not gather.ready(1, now=0.02)


def test_the_wait_restarts_once_every_slot_is_busy_again() -> None:
    gather = ReceiveGather(prefetch=4, wait_s=0.05)
    assert not gather.ready(1, now=0.0)
    assert not gather.ready(0, now=0.03)
    assert not gather.ready(1, now=0.06)


@pytest.mark.parametrize("prefetch", [1, 2])
def test_a_small_prefetch_receives_with_one_free_slot(prefetch: int) -> None:
    assert ReceiveGather(prefetch=prefetch).ready(1, now=0.0)
