"""Executor settings (``TQ_*`` environment variables)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from tqcore.domain.scripts import ScriptAllowList
from tqcore.settings import DEFAULT_POOL, POOL_PATTERN, CoreSettings

#: What a script's environment holds unless the operator lists otherwise (``TQ_SCRIPT_ENV``).
DEFAULT_SCRIPT_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


class ExecutorSettings(CoreSettings):
    """What one executor process runs and how."""

    #: Modules whose import registers handlers (comma-separated); none by default: a production executor runs
    #: only what its operator names (the local stack names ``tq_executor.demo``).
    handler_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    #: The pool this executor serves: it reads only that pool's queues, and registers its types in that pool (a
    #: type belongs to one pool; tasks of a type go to its pool's queues). The default pool's queues are
    #: ``{prefix}-{priority}.fifo``, another pool's ``{prefix}-{pool}-{priority}.fifo``.
    pool: str = Field(default=DEFAULT_POOL, pattern=POOL_PATTERN)
    #: Worker threads, i.e. attempts running at once in this process.
    threads: int = Field(default=8, ge=1, le=256)
    #: The ``script`` type's allow-list as JSON, ``{program: {"args": [...], "rest": ..., "max_args": n}}``
    #: (see ``tqcore.domain.scripts``); unset (and no ``scripts_file``): this executor runs no scripts.
    script_allow: Annotated[ScriptAllowList | None, NoDecode] = None
    #: A file holding that JSON instead (``TQ_SCRIPTS_FILE``).
    scripts_file: Path | None = None
    #: A script's whole environment, as a JSON object (nothing of the executor's own is passed on).
    script_env: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_SCRIPT_ENV))
    #: Where each run's private working directory is made (0700, removed after the run); unset: the temp dir.
    script_work_dir: Path | None = None
    #: When the executor runs as root, each worker slot runs its scripts as its own uid and gid, taken from
    #: ``[script_uid_base, script_uid_base + script_uid_count)`` (none may have a passwd entry).
    script_uid_base: int = Field(default=61000, ge=1000, lt=2**31)
    script_uid_count: int = Field(default=1000, ge=1, le=100000)
    #: Processes a script's uid may have at once (``RLIMIT_NPROC``; only when scripts run as their own uid).
    script_max_procs: int = Field(default=64, ge=1, le=100000)
    #: Messages each queue's consumer may hold unacked, running ones included (dramatiq's prefetch; SQS caps a
    #: receive at 10). As many as the threads by default, so one queue can keep every thread busy and concurrent
    #: claims share their writes; not many more: a buffered message is kept hidden but waits for this executor's
    #: threads, even while another executor idles (see docs/PERFORMANCE.md, "Lean core").
    prefetch: int = Field(default=8, ge=1, le=10)
    #: Seconds between presence heartbeats (what ``/readyz`` looks for).
    presence_s: float = Field(default=5.0, gt=0)
    #: On SIGTERM, how long running attempts may finish before the rest are released.
    shutdown_grace_s: float = Field(default=25.0, ge=0)

    @field_validator("handler_modules", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("script_allow", mode="before")
    @classmethod
    def _allow_list(cls, value: object) -> object:
        if isinstance(value, str):
            return ScriptAllowList.parse(value) if value.strip() else None
        return value

    @model_validator(mode="after")
    def _scripts_from_file(self) -> Self:
        if self.scripts_file is not None:
            if self.script_allow is not None:
                raise ValueError("set TQ_SCRIPT_ALLOW or TQ_SCRIPTS_FILE, not both")
            try:
                text = self.scripts_file.read_text()
            except OSError as error:
                raise ValueError(f"TQ_SCRIPTS_FILE cannot be read: {error}") from None
            object.__setattr__(self, "script_allow", ScriptAllowList.parse(text))
        return self

    def script_spec(self) -> str:
        """The allow-list as the type catalog publishes it."""
        return (self.script_allow or ScriptAllowList()).to_json()
