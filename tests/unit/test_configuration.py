"""docs/CONFIGURATION.md is what the settings classes say today, and names every TQ_* variable the code reads."""

from __future__ import annotations

import pytest

from tqdev import configuration

pytestmark = pytest.mark.unit


def test_the_reference_is_current() -> None:
    # Stale? Regenerate it: make configuration (python -m tqdev.configuration)
    assert configuration.DOC.read_text() == configuration.render()


def test_every_setting_says_what_it_means() -> None:
    unexplained = [s.variables[0] for s in configuration.settings() if not s.meaning]
    assert not unexplained, f"give these fields a #: comment in their settings class: {unexplained}"


def test_every_tq_variable_the_code_reads_is_in_the_reference() -> None:
    if not (configuration.REPO / "Makefile").is_file():
        pytest.skip("needs the repo's sources (not in a Pants sandbox)")
    documented = {v for s in configuration.settings() for v in s.variables} | set(configuration.OUTSIDE)
    reads = configuration.outside_reads()
    assert {"TQ_LOG_LEVEL", "TQ_EXECUTORS", "TQ_TEST_EMULATOR"} <= set(reads)  # the scan sees each kind of source
    missing = {name: files for name, files in reads.items() if name not in documented}
    assert not missing, f"add these to tqdev.configuration.OUTSIDE (or a settings class): {missing}"
    stale = set(configuration.OUTSIDE) - set(reads)
    assert not stale, f"no longer read anywhere: drop them from tqdev.configuration.OUTSIDE: {stale}"


def test_the_check_mode_fails_on_a_stale_reference(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    stale = Path(str(tmp_path)) / "CONFIGURATION.md"
    stale.write_text(configuration.render().replace("TQ_THREADS", "TQ_THREADZ"))
    monkeypatch.setattr(configuration, "DOC", stale)
    monkeypatch.setattr(configuration, "REPO", stale.parent)
    assert configuration.main(["--check"]) == 1
    assert configuration.main([]) == 0
    assert configuration.main(["--check"]) == 0


def test_every_settings_class_in_the_code_is_in_the_reference() -> None:
    import re

    if not (configuration.REPO / "Makefile").is_file():
        pytest.skip("needs the repo's sources (not in a Pants sandbox)")
    declared = set()
    for pattern in ("libs/*/src/**/*.py", "services/*/src/**/*.py"):
        for path in configuration.REPO.glob(pattern):
            declared |= set(
                re.findall(r"^class (\w+Settings)\((?:BaseSettings|[A-Z]\w*Settings)\):", path.read_text(), re.M)
            )
    assert {"CoreSettings", "GatewaySettings"} <= declared
    listed = {cls.__name__ for cls, _ in configuration.CLASSES}
    assert declared <= listed, f"add to tqdev.configuration.CLASSES (then make configuration): {declared - listed}"
