"""Each service's image runs its own pex as a non-root user on python:3.11-slim, with a health check; the example
handler package's image (examples/thumbnails) is the executor's plus the package, its modules and its pool."""

from __future__ import annotations

import json
import re
import shlex
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
    return parse((ROOT / "services" / service / "Dockerfile").read_text())


def parse(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile's text, continuation lines joined, comments dropped."""
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


EXAMPLE = ROOT / "examples" / "thumbnails"


def example() -> list[tuple[str, str]]:
    return parse((EXAMPLE / "Dockerfile").read_text())


def example_env() -> dict[str, str]:
    """The example image's ENV settings (``ENV A=1 B=2`` form)."""
    words = [w for name, arguments in example() if name == "ENV" for w in shlex.split(arguments)]
    return dict(w.split("=", 1) for w in words)


def test_the_example_image_is_built_from_the_tq_executor_image() -> None:
    defaults = dict(a.split("=", 1) for name, a in example() if name == "ARG" and "=" in a)
    (base,) = [a for name, a in example() if name == "FROM"]
    image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m[1]], base)
    repository = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    assert repository.rsplit("/", 1)[-1].endswith("executor"), image


def test_the_example_image_installs_its_package_where_the_executor_finds_it() -> None:
    copies = [a.split() for name, a in example() if name == "COPY"]
    assert ["pyproject.toml", "/src/thumbnails/"] in copies
    assert ["src", "/src/thumbnails/src"] in copies
    (install,) = [a for name, a in example() if name == "RUN" and "pip install" in a]
    words = shlex.split(install.split("&&")[0])
    target = words[words.index("--target") + 1]
    # tq and pydantic are the executor's: the package comes without its dependencies, after the executor's on the path
    assert "--no-deps" in words
    assert "/src/thumbnails" in words
    assert target in example_env()["PEX_EXTRA_SYS_PATH"].split(":")


def test_the_example_image_names_modules_it_ships_and_the_pool_its_stack_config_gives_them() -> None:
    import yaml

    env = example_env()
    modules = env["TQ_HANDLER_MODULES"].split(",")
    for module in modules:
        assert (EXAMPLE / "src" / (module.replace(".", "/") + ".py")).is_file(), module
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{0,19}", env["TQ_POOL"])  # TQ_POOL's pattern (the contract's)
    stack = yaml.safe_load((EXAMPLE / "Pulumi.thumbnails.yaml").read_text())["config"]
    assert stack["tq:pools"][env["TQ_POOL"]]["handlerModules"] == modules


def test_the_example_image_keeps_the_executor_s_user_entrypoint_and_health_check() -> None:
    users = [a for name, a in example() if name == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert not [name for name, _ in example() if name in {"ENTRYPOINT", "CMD", "HEALTHCHECK"}]
