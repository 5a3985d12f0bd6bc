"""RetryPolicy.delay_s: the contract's capped exponential, less at most half of it for jitter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tqcore.domain.model import RetryPolicy

pytestmark = pytest.mark.unit

FAST = settings(database=None, deadline=None)

bases = st.floats(min_value=0.001, max_value=3600, allow_nan=False, allow_infinity=False)
caps = st.floats(min_value=0.001, max_value=86400, allow_nan=False, allow_infinity=False)
retry_numbers = st.integers(min_value=1, max_value=21)  # max_retries is at most 20
jitters = st.floats(min_value=0.0, max_value=1.0, exclude_max=True, allow_nan=False)


def nominal(policy: RetryPolicy, n: int) -> float:
    """Contract section 3: ``min(backoff_max_s, backoff_base_s * 2**(n-1))``."""
    return min(policy.backoff_max_s, policy.backoff_base_s * 2 ** (n - 1))


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (8, 256.0), (9, 300.0), (20, 300.0)],
)
def test_default_policy_without_jitter(n: int, expected: float) -> None:
    assert RetryPolicy().delay_s(n, 0.0) == expected


def test_defaults_match_the_contract() -> None:
    assert RetryPolicy() == RetryPolicy(max_retries=5, backoff_base_s=2.0, backoff_max_s=300.0)


@pytest.mark.parametrize(("jitter", "expected"), [(0.0, 10.0), (0.25, 8.75), (0.5, 7.5), (0.9999, 5.0005)])
def test_equal_jitter_takes_away_at_most_half(jitter: float, expected: float) -> None:
    assert RetryPolicy(backoff_base_s=5.0).delay_s(2, jitter) == pytest.approx(expected)


@pytest.mark.parametrize("n", [0, -1])
def test_retry_numbers_start_at_one(n: int) -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        RetryPolicy().delay_s(n, 0.0)


@FAST
@given(base=bases, cap=caps, n=retry_numbers, jitter=jitters)
def test_delay_is_between_half_the_nominal_and_the_nominal(base: float, cap: float, n: int, jitter: float) -> None:
    policy = RetryPolicy(backoff_base_s=base, backoff_max_s=cap)
    delay = policy.delay_s(n, jitter)
    assert nominal(policy, n) / 2 <= delay <= nominal(policy, n)
    assert delay <= cap


@FAST
@given(base=bases, cap=caps, n=retry_numbers)
def test_nominal_delay_never_shrinks_and_is_capped(base: float, cap: float, n: int) -> None:
    policy = RetryPolicy(backoff_base_s=base, backoff_max_s=cap)
    assert policy.delay_s(n, 0.0) == nominal(policy, n)
    assert policy.delay_s(n + 1, 0.0) >= policy.delay_s(n, 0.0)
    assert policy.delay_s(n, 0.0) <= cap


@FAST
@given(n=retry_numbers, low=jitters, high=jitters)
def test_more_jitter_never_lengthens_the_delay(n: int, low: float, high: float) -> None:
    low, high = sorted((low, high))
    policy = RetryPolicy()
    assert policy.delay_s(n, high) <= policy.delay_s(n, low)


@FAST
@given(base=bases, n=retry_numbers)
def test_below_the_cap_each_retry_doubles(base: float, n: int) -> None:
    policy = RetryPolicy(backoff_base_s=base, backoff_max_s=1e12)
    assert policy.delay_s(n + 1, 0.0) == pytest.approx(2 * policy.delay_s(n, 0.0))
