"""The embedded AWS emulators: ministack (default) and moto server (the second opinion)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx

from tqdev.procs import Proc, free_port, wait_until

REPO = Path(__file__).resolve().parents[4]
#: The emulators live in their own virtual environment: ministack pins an older botocore.
EMULATOR_BIN = Path(os.environ.get("TQ_EMULATOR_BIN", REPO / ".venv-emu" / "bin"))


def start_emulator(kind: str, log_dir: Path, port: int | None = None) -> tuple[Proc, str]:
    """Start ``ministack`` or ``moto`` on 127.0.0.1; the process and its endpoint URL."""
    port = port or free_port()
    env = {**os.environ}
    if kind == "ministack":
        argv = [str(_binary("ministack"))]
        env.update(
            BIND_HOST="127.0.0.1",
            GATEWAY_PORT=str(port),
            SERVICES="dynamodb,sqs,s3",
            IOT_MTLS_ENABLED="0",  # its MQTT listener would bind 0.0.0.0:8883
            SFTP_ENABLED="0",
            LOG_LEVEL="WARNING",
        )
        health = f"http://127.0.0.1:{port}/_ministack/health"
    elif kind == "moto":
        argv = [str(_binary("moto_server")), "-H", "127.0.0.1", "-p", str(port)]
        health = f"http://127.0.0.1:{port}/moto-api/"
    else:
        raise ValueError(f"unknown emulator {kind!r} (ministack or moto)")
    log_dir.mkdir(parents=True, exist_ok=True)
    proc = Proc(kind, argv, env, log_dir / f"{kind}.log")
    wait_until(lambda: proc.alive() and httpx.get(health, timeout=1).status_code < 500, 30, f"{kind} on port {port}")
    return proc, f"http://127.0.0.1:{port}"


def _binary(name: str) -> Path:
    path = EMULATOR_BIN / name
    if path.exists():
        return path
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found in {EMULATOR_BIN} or on PATH; run 'make install'")
    return Path(found)
