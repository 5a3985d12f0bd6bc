"""Fixtures shared by every test tier: a real emulator server over HTTP, unique resource names, local stacks."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Which emulator the integration and e2e tiers run against: ministack (default) or moto.
EMULATOR = os.environ.get("TQ_TEST_EMULATOR", "ministack")

# Gateways built in tests accept the contract's dev tokens (``dev-alice`` ...); production accepts API keys only.
os.environ.setdefault("TQ_AUTH", "dev")


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of an emulator server started for this test session (or ``TQ_TEST_ENDPOINT``)."""
    from tqdev.emulator import start_emulator

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    if os.environ.get("TQ_TEST_ENDPOINT"):
        yield os.environ["TQ_TEST_ENDPOINT"]
        return
    proc, url = start_emulator(EMULATOR, tmp_path_factory.mktemp("emulator"))
    try:
        yield url
    finally:
        proc.stop()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """Where a test's stack writes its logs."""
    return tmp_path / "run"
