"""Settings that cannot work together are refused, with one line naming them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tqcore.settings import CoreSettings, settings_problem

pytestmark = pytest.mark.unit


def test_a_heartbeat_no_shorter_than_the_lease_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        CoreSettings(heartbeat_s=10, lease_s=5)
    assert settings_problem(refused.value) == (
        "TQ_HEARTBEAT_S (10) must be less than TQ_LEASE_S (5): every lease would run out before its next heartbeat"
    )
    with pytest.raises(ValidationError):
        CoreSettings(heartbeat_s=5, lease_s=5)


def test_a_heartbeat_too_close_to_the_lease_for_the_stop_margin_is_refused() -> None:
    # An attempt is stopped 2 s before its lease lapses: a due beat needs as long again to extend it
    with pytest.raises(ValidationError) as refused:
        CoreSettings(heartbeat_s=5.9, lease_s=6)
    assert settings_problem(refused.value) == (
        "TQ_LEASE_S (6) must exceed TQ_HEARTBEAT_S (5.9) by at least 4 s: an attempt is stopped 2 s before its "
        "lease lapses, and a heartbeat needs as long again to extend it"
    )
    with pytest.raises(ValidationError):
        CoreSettings(heartbeat_s=2.1, lease_s=6)
    # The defaults and the fast knobs the tests use pass
    assert (CoreSettings().lease_s, CoreSettings().heartbeat_s) == (30, 10)
    assert CoreSettings(heartbeat_s=2, lease_s=6).heartbeat_s == 2


def test_each_bad_setting_is_named_by_its_variable_on_one_line() -> None:
    with pytest.raises(ValidationError) as refused:
        CoreSettings(lease_s=1, prefix="Bad Prefix")
    line = settings_problem(refused.value)
    assert "\n" not in line
    assert line.startswith("TQ_PREFIX: String should match pattern")
    assert "; TQ_LEASE_S: Input should be greater than or equal to 2" in line
