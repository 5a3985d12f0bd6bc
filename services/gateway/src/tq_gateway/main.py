"""``tq-gateway``: serve the API with gunicorn."""

from __future__ import annotations

import os
import sys

from tq_gateway.settings import GatewaySettings
from tqcore.settings import load_settings


def main() -> int:
    """Replace this process with gunicorn serving ``create_app()`` (settings that cannot work: exit 2, one line)."""
    load_settings(GatewaySettings, "tq-gateway")  # before gunicorn, whose config and workers would each raise
    argv = [sys.executable, "-m", "gunicorn", "-c", "python:tq_gateway.gunicorn_conf", "tq_gateway.app:create_app()"]
    os.execv(sys.executable, argv)  # noqa: S606 - fixed argv, no shell
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
