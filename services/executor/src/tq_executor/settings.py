"""Executor settings (``TQ_*`` environment variables)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from tqcore.settings import CoreSettings


class ExecutorSettings(CoreSettings):
    """What one executor process runs and how."""

    #: Modules whose import registers handlers (comma-separated).
    handler_modules: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["tq_executor.demo"])
    #: Worker threads, i.e. attempts running at once in this process.
    threads: int = Field(default=8, ge=1, le=256)
    #: Programs the ``script`` demo type may run (argv[0], looked up on PATH; comma-separated).
    script_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["echo", "sleep", "true", "false", "date"]
    )
    #: Messages each queue's consumer may hold unacked, running ones included (dramatiq's prefetch; SQS caps a
    #: receive at 10). Few: a buffered message is kept hidden but waits for this executor's threads, even while
    #: another executor idles. A burst of short tasks runs with fewer receives at 10 (see docs/PERFORMANCE.md).
    prefetch: int = Field(default=4, ge=1, le=10)
    #: Seconds between presence heartbeats (what ``/readyz`` looks for).
    presence_s: float = Field(default=5.0, gt=0)
    #: On SIGTERM, how long running attempts may finish before the rest are released.
    shutdown_grace_s: float = Field(default=25.0, ge=0)

    @field_validator("handler_modules", "script_allow", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
