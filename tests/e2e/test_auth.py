"""API keys end to end: made with the real ``tq-keys`` CLI, used, revoked, and found in plaintext nowhere."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import running_stack, start_stack
from tqcore.adapters import aws
from tqcore.settings import CoreSettings
from tqdev.stack import BIN, Stack

pytestmark = pytest.mark.e2e

ECHO = {"type": "echo", "group": "team-a", "payload": {"x": 1}}
#: The gateway caches a key for 10 s (``API_KEY_CACHE_S``): a revocation shows within that, plus a margin.
REVOKED_WITHIN_S = 15


@pytest.fixture(scope="module")
def stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack logging at DEBUG, so a token that reached any log line at all would be found."""
    with running_stack(
        emulator, tmp_path_factory.mktemp("auth"), executors=1, env={"TQ_LOG_LEVEL": "DEBUG"}
    ) as started:
        yield started


def tq_keys(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real CLI against the stack's table."""
    return subprocess.run(
        [str(BIN / "tq-keys"), *args], env=stack.env("gateway"), capture_output=True, text=True, timeout=60
    )


def scan(stack: Stack) -> list[dict[str, Any]]:
    """Every item of the stack's table."""
    settings = CoreSettings(endpoint_url=stack.config.endpoint_url, prefix=stack.config.prefix)
    ddb = aws.client(settings, "dynamodb")
    items: list[dict[str, Any]] = []
    start: dict[str, Any] | None = None
    while True:
        page = ddb.scan(TableName=settings.table_name, **({"ExclusiveStartKey": start} if start else {}))
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def test_an_api_key_works_in_its_groups_until_revoked_and_is_stored_and_logged_nowhere(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Given a key for erin in team-a, made with the CLI
    created = tq_keys(stack, "create", "--user", "erin", "--group", "team-a")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    key_id, secret = token.split("_", 2)[1:]
    assert token.startswith("tq_")
    assert len(secret) == 43
    assert key_id in created.stderr
    assert secret not in created.stderr
    api = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    with api:
        # When erin submits into her group, then into another
        mine = api.post("/v1/tasks", json=ECHO)
        other = api.post("/v1/tasks", json={**ECHO, "group": "team-b"})
        # Then the first is accepted as hers and the second forbidden
        assert mine.status_code == 201, mine.text
        assert mine.json()["owner"] == "erin"
        assert other.status_code == 403, other.text
        # and requests that end in errors (which log more) leave no token behind either
        assert api.get("/v1/tasks/01hzzzzzzzzzzzzzzzzzzzzzzz").status_code == 404
        bad = api.post("/v1/tasks", content=b"{not json", headers={"content-type": "application/json"})
        assert bad.status_code == 400, bad.text
        # The listing shows the key without its secret
        listed = tq_keys(stack, "list")
        assert listed.returncode == 0, listed.stderr
        assert f"{key_id}\terin\tteam-a\tno\t" in listed.stdout
        assert secret not in listed.stdout
        # When the key is revoked
        revoked = tq_keys(stack, "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        # Then every gateway worker refuses it within the cache time
        deadline = time.monotonic() + REVOKED_WITHIN_S
        while (response := api.get("/v1/tasks", params={"group": "team-a"})).status_code != 401:
            assert response.status_code == 200, response.text
            assert time.monotonic() < deadline, f"key still accepted {REVOKED_WITHIN_S} s after revocation"
            time.sleep(0.5)
        assert response.headers["www-authenticate"] == "Bearer"
        for _ in range(6):  # two workers, each with its own cache
            assert api.get("/v1/tasks", params={"group": "team-a"}).status_code == 401
    assert tq_keys(stack, "revoke", "0123456789abcdef").returncode == 1

    # Then the table holds the key's hash but neither the token nor its secret
    items = scan(stack)
    assert any(item.get("key_id", {}).get("S") == key_id for item in items)
    assert secret not in repr(items)
    # and no log or other file of the stack (or of the emulator, or of any other test) contains them
    logs = [path for path in tmp_path_factory.getbasetemp().rglob("*") if path.is_file()]
    assert {"gateway.log", "executor-1.log", "scheduler.log", "reaper.log"} <= {path.name for path in logs}
    assert (stack.config.run_dir / "gateway.log").stat().st_size > 0
    leaked = [path for path in logs if _contains(path, secret.encode())]
    assert leaked == []


def test_unknown_and_dev_tokens_without_dev_mode_are_401(emulator: str, tmp_path: Path) -> None:
    # Given a stack whose gateway accepts API keys only (the production default)
    stack = start_stack(emulator, tmp_path, executors=0, env={"TQ_AUTH": "keys"})
    try:
        for token in ("dev-alice", "tq_0123456789abcdef_" + "a" * 43, "not-a-token"):
            response = httpx.get(f"{stack.url}/v1/tasks", headers={"Authorization": f"Bearer {token}"}, timeout=10)
            # Then a dev token is as unknown as any other
            assert response.status_code == 401, (token, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.headers["content-type"] == "application/problem+json"
    finally:
        stack.stop()


def _contains(path: Path, needle: bytes) -> bool:
    try:
        return needle in path.read_bytes()
    except OSError:
        return False
