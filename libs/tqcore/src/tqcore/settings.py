"""Settings shared by every tq service (pydantic-settings, read from ``TQ_*`` environment variables)."""

from __future__ import annotations

import sys
from typing import Literal, Self, TypeVar

from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tqcore.domain.model import Priority
from tqcore.domain.state import DEFAULT_POOL as DEFAULT_POOL

S = TypeVar("S", bound=BaseSettings)

#: A pool's name: it becomes part of its queues' names (``{prefix}-{pool}-{priority}.fifo``).
POOL_PATTERN = r"^[a-z0-9][a-z0-9-]{0,19}$"

#: An executor stops an attempt whose lease was not extended this long before the lease would lapse: a loop tick,
#: the worker thread's poll of its stop flag, the SIGKILL and clock skew between hosts, with room for a stalled
#: executor (tq_executor/heartbeat.py).
STOP_MARGIN_S = 2.0


class CoreSettings(BaseSettings):
    """Where tq's AWS resources live and the timing knobs every service agrees on.

    ``endpoint_url`` is the only switch between the embedded emulator and real AWS; every resource name
    derives from ``prefix`` so several stacks and test runs can share one emulator or account.
    """

    model_config = SettingsConfigDict(env_prefix="TQ_", extra="ignore", frozen=True, populate_by_name=True)

    #: The AWS region of the table, queues and bucket.
    region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("TQ_REGION", "AWS_REGION", "AWS_DEFAULT_REGION")
    )
    #: An AWS endpoint to use instead of AWS's own (an emulator, LocalStack); unset on AWS.
    endpoint_url: str | None = Field(default=None, validation_alias=AliasChoices("TQ_ENDPOINT_URL", "AWS_ENDPOINT_URL"))
    #: Every resource name starts with it: ``<prefix>-tasks`` (table), ``<prefix>-<priority>.fifo`` (queues),
    #: ``<prefix>-logs`` (bucket); every service of a stack must agree on it.
    prefix: str = Field(default="tq", pattern=r"^[a-z0-9][a-z0-9-]{0,38}[a-z0-9]$")

    #: How long a claimed attempt is the executor's without a heartbeat (also the queues' visibility timeout):
    #: an executor gone silent this long loses the attempt to the reaper.
    lease_s: int = Field(default=30, ge=2, le=43200)
    #: How often a running attempt's lease is extended (less than ``lease_s`` by a margin).
    heartbeat_s: float = Field(default=10, gt=0)
    #: How long a submit's ``idempotency_key`` is remembered: the same key within it answers the same task.
    idempotency_ttl_s: int = Field(default=86400, ge=60)
    #: A task still ``queued`` this long after it was sent is sent again (dedup id keeps SQS from doubling it).
    resend_after_s: int = Field(default=30, ge=1)
    #: How many receives before SQS moves a message to its queue's dead-letter queue.
    max_receives: int = Field(default=5, ge=1, le=1000)
    #: Events, and ended tasks, are deleted by DynamoDB's TTL this many days after they were written/ended.
    history_retention_days: int = Field(default=90, ge=1, le=36500)
    #: Shards of the ``due`` index per minute bucket (spreads one minute's peak of due work over partitions).
    due_shards: int = Field(default=4, ge=1, le=64)
    #: Shards of the ``reap`` index per bucket (re-sends, lease expiries, overdue work).
    reap_shards: int = Field(default=4, ge=1, le=64)
    #: A run log keeps at most this many bytes of an attempt's output (the rest is cut, with a marker line).
    run_log_max_bytes: int = Field(default=1024 * 1024, ge=1, le=64 * 1024 * 1024)
    #: Run logs are served this long after their attempt ends (then 410); the bucket's lifecycle rule deletes
    #: them in whole days (at least one) after the same time.
    run_log_retention_s: int = Field(default=30 * 86400, ge=1)
    #: Task-store writes of concurrent threads share ``TransactWriteItems`` calls: a write is sent at once while
    #: fewer than this many calls are in flight, otherwise it joins the next one (adapters/dynamodb/batching.py).
    write_max_inflight: int = Field(default=2, ge=1, le=64)
    #: How long a write that starts while another is in flight waits for more to join it (0: not at all). A lone
    #: write never waits; under load a few milliseconds let several threads' writes share one call.
    write_linger_ms: float = Field(default=5, ge=0, le=50)
    #: The same for enqueues: concurrent sends of one process share ``SendMessageBatch`` calls (ten at most).
    send_max_inflight: int = Field(default=2, ge=1, le=64)
    send_linger_ms: float = Field(default=5, ge=0, le=50)
    #: Where spans go: ``otlp`` (OTLP over HTTP to ``otlp_endpoint``), ``console`` (one JSON object per line on
    #: stdout) or ``none`` (no tracing SDK at all).
    traces_exporter: Literal["otlp", "console", "none"] = "none"
    #: OTLP/HTTP base URL (spans go to ``<base>/v1/traces``); unset: the standard ``OTEL_EXPORTER_OTLP_*``.
    otlp_endpoint: str | None = None
    #: Share of new traces kept (a trace's spans all follow its root's decision).
    traces_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    #: Where executors, schedulers and reapers serve ``/metrics`` (the gateway serves it on its own port);
    #: port 0 turns it off. Several processes on one host each need a port of their own.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9100, ge=0, le=65535)

    @model_validator(mode="after")
    def _timings_agree(self) -> Self:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError(
                f"TQ_HEARTBEAT_S ({self.heartbeat_s:g}) must be less than TQ_LEASE_S ({self.lease_s}): "
                "every lease would run out before its next heartbeat"
            )
        if self.lease_s - self.heartbeat_s < 2 * STOP_MARGIN_S:
            raise ValueError(
                f"TQ_LEASE_S ({self.lease_s}) must exceed TQ_HEARTBEAT_S ({self.heartbeat_s:g}) by at least "
                f"{2 * STOP_MARGIN_S:g} s: an attempt is stopped {STOP_MARGIN_S:g} s before its lease lapses, "
                "and a heartbeat needs as long again to extend it"
            )
        return self

    @property
    def table_name(self) -> str:
        """The single DynamoDB table."""
        return f"{self.prefix}-tasks"

    @property
    def bucket_name(self) -> str:
        """The S3 bucket for run logs (payloads and results live in the table)."""
        return f"{self.prefix}-logs"

    def queue_name(self, priority: Priority, pool: str = DEFAULT_POOL) -> str:
        """The FIFO queue for one priority of one pool (the default pool's names have no pool part)."""
        return f"{self._queue_stem(pool)}-{priority.value}.fifo"

    def dlq_name(self, priority: Priority, pool: str = DEFAULT_POOL) -> str:
        """The FIFO dead-letter queue behind one priority's queue of one pool."""
        return f"{self._queue_stem(pool)}-{priority.value}-dlq.fifo"

    def _queue_stem(self, pool: str) -> str:
        return self.prefix if pool == DEFAULT_POOL else f"{self.prefix}-{pool}"


def settings_problem(error: ValidationError) -> str:
    """One line naming each bad setting by its variable (``TQ_LEASE_S: ...``), for a refusal to start."""
    problems = []
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        if item["loc"]:
            name = str(item["loc"][0])
            name = name if name.isupper() else f"TQ_{name.upper()}"  # aliases are already variable names
            problems.append(f"{name}: {message}")
        else:  # a check across several settings names them in its message
            problems.append(message)
    return "; ".join(problems)


def load_settings(kind: type[S], program: str) -> S:
    """``kind()`` from the environment; settings that cannot work exit the process (status 2) with one line."""
    try:
        return kind()
    except ValidationError as error:
        sys.stderr.write(f"{program}: refusing to start: {settings_problem(error)}\n")
        raise SystemExit(2) from None
