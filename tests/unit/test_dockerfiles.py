"""Each service's image runs its own pex as a non-root user on python:3.11-slim, with a health check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
#: Service -> the port and path its HEALTHCHECK asks (the gateway's API port; the others' /metrics port).
HEALTH = {
    "gateway": (8080, "/healthz"),
    "executor": (9100, "/metrics"),
    "scheduler": (9100, "/metrics"),
    "reaper": (9100, "/metrics"),
}


def instructions(service: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the service's Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "services" / service / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    parsed = []
    for line in joined.splitlines():
        if line.strip():
            instruction, _, arguments = line.strip().partition(" ")
            parsed.append((instruction.upper(), arguments.strip()))
    return parsed


def only(service: str, instruction: str) -> str:
    """The arguments of the one ``instruction`` the Dockerfile must have exactly once."""
    found = [arguments for name, arguments in instructions(service) if name == instruction]
    assert len(found) == 1, f"{service}'s Dockerfile has {len(found)} {instruction} instructions"
    return found[0]


@pytest.mark.parametrize("service", HEALTH)
def test_the_image_is_python_3_11_slim(service: str) -> None:
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", only(service, "FROM"))


@pytest.mark.parametrize("service", HEALTH)
def test_the_service_runs_as_a_user_that_is_not_root(service: str) -> None:
    users = [arguments for name, arguments in instructions(service) if name == "USER"]
    assert users, f"{service}'s Dockerfile has no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}


@pytest.mark.parametrize("service", HEALTH)
def test_the_image_copies_the_service_s_pex_from_dist(service: str) -> None:
    copies = [arguments.split() for name, arguments in instructions(service) if name == "COPY"]
    sources = [word for words in copies for word in words[:-1] if not word.startswith("--")]
    assert f"dist/tq-{service}.pex" in sources
    assert not [source for source in sources if source.endswith(".pex") and source != f"dist/tq-{service}.pex"]


@pytest.mark.parametrize("service", HEALTH)
def test_the_entrypoint_runs_the_pex(service: str) -> None:
    copies = [arguments.split() for name, arguments in instructions(service) if name == "COPY"]
    destination = next(words[-1] for words in copies if f"dist/tq-{service}.pex" in words)
    entrypoint = json.loads(only(service, "ENTRYPOINT"))  # exec form: signals reach the service itself
    assert entrypoint[-1] in {destination, f"{destination.rstrip('/')}/tq-{service}.pex"}


@pytest.mark.parametrize(("service", "health"), HEALTH.items())
def test_the_healthcheck_asks_the_service_s_own_endpoint(service: str, health: tuple[int, str]) -> None:
    port, path = health
    command = only(service, "HEALTHCHECK").partition("CMD")[2]
    assert command, f"{service}'s HEALTHCHECK runs no command"
    assert f"http://127.0.0.1:{port}{path}" in command
    assert "curl" not in command  # the slim image has none
    assert str(port) in only(service, "EXPOSE").split()


def test_the_gateway_image_counts_every_gunicorn_worker_in_its_metrics() -> None:
    env = " ".join(argument for name, argument in instructions("gateway") if name == "ENV")
    directory = re.search(r"PROMETHEUS_MULTIPROC_DIR=(\S+)", env)
    assert directory, "the gateway's /metrics would show one worker's counters"
    made = [argument for name, argument in instructions("gateway") if name == "RUN" and directory[1] in argument]
    assert made, f"{directory[1]} is never created"
