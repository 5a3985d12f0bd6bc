"""The OpenAPI description of ``GET /v1/overview``."""

from __future__ import annotations

from typing import Any

from tq_gateway.openapi_components import GUARDED, ok, queue_schema, ref

_COUNT = {"type": "integer", "minimum": 0}
_SECONDS = {"type": ["number", "null"], "minimum": 0}


def schemas() -> dict[str, Any]:
    """The overview's schemas."""
    queue = queue_schema()
    overview_queue = {
        **queue,
        "required": [*queue["required"], "oldest_age_s"],
        "properties": {
            **queue["properties"],
            "oldest_age_s": {
                **_SECONDS,
                "description": "seconds the longest-waiting queued task has waited (null: none waits; read from a "
                "sample of the queued tasks, so a lower bound when thousands wait)",
            },
        },
    }
    minute = {
        "type": "object",
        "required": ["minute", "succeeded", "failed", "fired", "lag_s"],
        "properties": {
            "minute": {"type": "string", "format": "date-time", "description": "the minute's start"},
            "succeeded": {**_COUNT, "description": "attempts that succeeded"},
            "failed": {**_COUNT, "description": "attempts that failed (raised, timed out or lost), retried or not"},
            "fired": {**_COUNT, "description": "runs and retries the scheduler queued"},
            "lag_s": {"type": "number", "minimum": 0, "description": "how late the latest of them was queued"},
        },
    }
    return {
        "OverviewQueue": overview_queue,
        "OverviewMinute": minute,
        "OverviewPool": {
            "type": "object",
            "required": ["name", "executors", "queues"],
            "properties": {
                "name": {"type": "string"},
                "executors": {**_COUNT, "description": "live executors serving the pool"},
                "queues": {"type": "array", "items": ref("OverviewQueue")},
            },
        },
        "OverviewScheduler": {
            "type": "object",
            "required": ["lag_s", "last_pass_age_s"],
            "properties": {
                "lag_s": {
                    **_SECONDS,
                    "description": "how late the latest slot the scheduler fired in the last 5 minutes was queued "
                    "(null: none fired)",
                },
                "last_pass_age_s": {
                    **_SECONDS,
                    "description": "seconds since the stalest live scheduler replica finished a pass (null: none "
                    "reported one)",
                },
            },
        },
        "Overview": {
            "type": "object",
            "required": ["at", "pools", "replicas", "throughput", "scheduler", "dead_letters"],
            "properties": {
                "at": {"type": "string", "format": "date-time"},
                "pools": {"type": "array", "items": ref("OverviewPool")},
                "replicas": {
                    "type": "object",
                    "additionalProperties": _COUNT,
                    "description": "live replicas of each service (gateway, executor, scheduler, reaper)",
                },
                "throughput": {
                    "type": "array",
                    "items": ref("OverviewMinute"),
                    "description": "what the live instances did in each of the last 15 minutes, oldest first; the "
                    "last minute is under way. An instance that stopped takes its counts with it",
                },
                "scheduler": ref("OverviewScheduler"),
                "dead_letters": {
                    "type": "object",
                    "additionalProperties": _COUNT,
                    "description": "failed tasks awaiting redrive in each of the caller's groups (an admin's: every "
                    "group's), counted up to 10000",
                },
            },
        },
    }


def paths() -> dict[str, Any]:
    """``/v1/overview``."""
    return {
        "/v1/overview": {
            "get": {
                "operationId": "getOverview",
                "tags": ["queues"],
                "summary": "The system at a glance: queues and pools, live replicas, throughput, scheduler lag",
                "description": "Totals over every group (any authenticated caller may read them, as `/v1/queues`), "
                "but the dead letters, which are counted for the caller's groups only. Each gateway process reuses a "
                "read for 5 s; live instances report what they did with their heartbeats, every 5 s.",
                "responses": {"200": ok("the overview", "Overview"), **GUARDED},
            }
        }
    }
