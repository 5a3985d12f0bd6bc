"""Schemathesis over every operation of the running gateway's ``/openapi.json``: no 5xx, nothing undocumented.

Each operation gets schema-valid (positive) and schema-violating (negative) cases as ``alice``, positive ones as
``admin`` and with an unknown token, and schemathesis' coverage cases (boundary values, each constraint broken
once). Task-scoped operations also run against real tasks (succeeded, failed, scheduled, running), so their 200
answers are checked too, not only the 404s. Generation is derandomized (the same cases every run); the figures
are printed (``-s``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from tests.conftest import TOKENS, running_stack, wait_for_status
from tqdev.stack import Stack

#: ``slow``: ministack only (``make test-moto`` leaves it out); the gateway's answers do not depend on the emulator,
#: and the AWS calls behind them run on moto in the other e2e tests.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: The schemathesis checks (their CLI names): no 5xx, and status, body, content type and headers as documented.
CHECK_NAMES = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
]
#: Generated cases per operation, mode and principal (hypothesis may stop early once an operation's inputs are
#: exhausted, e.g. the parameterless ones); the total is asserted below.
MAX_EXAMPLES = {GenerationMode.POSITIVE: 50, GenerationMode.NEGATIVE: 30}
ADMIN_EXAMPLES = 10
#: Cases with a generated (unknown) bearer token: 401 on every protected operation.
ANONYMOUS = 5
MIN_CASES = 500
#: The stack is fuzzed, not throttled; a stream of a seeded task that does not end (running, scheduled) lasts a
#: moment, not the default five minutes.
STACK_ENV = {"TQ_RATE_LIMIT_RPS": "100000", "TQ_RATE_LIMIT_BURST": "100000", "TQ_STREAM_MAX_S": str(0.2)}
#: The longest a case waits (``wait_s``) on a seeded task: the document allows 30 s, which on a running task is 30 s.
SHORT_WAIT_S = 0.2


@pytest.fixture(scope="module")
def fuzzed_stack(emulator: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack of its own (one executor, no rate limit), so the fuzzer's tasks disturb no other module."""
    with running_stack(emulator, tmp_path_factory.mktemp("fuzz"), executors=1, env=STACK_ENV) as started:
        yield started


def _seed(stack: Stack) -> dict[str, str]:
    """Tasks in several states (ids by state) and a run id of the succeeded one, for the fuzzer to aim at."""
    with httpx.Client(base_url=stack.url, headers=_auth("alice"), timeout=10) as api:

        def submit(body: dict[str, Any]) -> str:
            response = api.post("/v1/tasks", json={"group": "team-a", **body})
            assert response.status_code == 201, response.text
            return str(response.json()["id"])

        seeded = {
            "succeeded": submit({"type": "echo", "payload": {"n": 1}}),
            "failed": submit({"type": "flaky", "payload": {"fail_times": 99}, "retry": {"max_retries": 0}}),
            "scheduled": submit({"type": "echo", "schedule": {"every_s": 3600}}),
            "running": submit({"type": "sleep", "payload": {"seconds": 600}, "timeout_s": 900}),
        }
        wait_for_status(api, seeded["succeeded"], {"succeeded"}, timeout_s=30)
        wait_for_status(api, seeded["failed"], {"failed"}, timeout_s=30)
        wait_for_status(api, seeded["running"], {"running"}, timeout_s=30)
        runs = api.get(f"/v1/tasks/{seeded['succeeded']}/runs").json()["items"]
        seeded["run_id"] = runs[0]["run_id"]
    return seeded


def _auth(user: str | None) -> dict[str, str]:
    if user is None:
        return {}
    return {"Authorization": f"Bearer {TOKENS[user]}"}


def _harmless(case: schemathesis.Case) -> schemathesis.Case:
    """Aim some submits (single or batched) at a real type and group (else nearly all are 403/422), at most one
    run a minute."""
    body = case.body
    if isinstance(body, dict) and case.operation.label == "POST /v1/tasks":
        _aim(body)
    elif isinstance(body, dict) and case.operation.label == "POST /v1/tasks:batch":
        for item in body.get("tasks") or []:
            if isinstance(item, dict):
                _aim(item)
    return case


def _aim(body: dict[str, Any]) -> None:
    body.update(type="echo", group="team-a")
    schedule = body.get("schedule")
    if isinstance(schedule, dict) and isinstance(schedule.get("every_s"), int | float):
        schedule["every_s"] = max(schedule["every_s"], 600)


def _short_wait(case: schemathesis.Case) -> schemathesis.Case:
    """A wait on a seeded task bounded to a moment (a value out of range stays as generated: a 422)."""
    wait_s = (case.query or {}).get("wait_s")
    if isinstance(wait_s, int | float) and not isinstance(wait_s, bool) and 0 < wait_s <= 30:
        case.query["wait_s"] = min(wait_s, SHORT_WAIT_S)
    return case


def _has_inputs(operation: schemathesis.APIOperation) -> bool:
    """Whether the operation takes anything a negative case could get wrong (the token is not fuzzed)."""
    return any(p.name != "Authorization" for p in operation.iter_parameters()) or bool(operation.body)


def _strategy(
    operation: schemathesis.APIOperation, mode: GenerationMode, user: str | None, seeded: dict[str, str]
) -> st.SearchStrategy[schemathesis.Case]:
    """Cases for one operation: generated ids, and (for task-scoped ones) the seeded tasks' ids."""
    headers = _auth(user)
    strategies = [operation.as_strategy(generation_mode=mode, headers=headers)]
    path_names = {p.name for p in operation.path_parameters}
    if "task_id" in path_names:
        for state in ("succeeded", "failed", "scheduled", "running"):
            fixed = {"task_id": seeded[state]}
            if "run_id" in path_names and state == "succeeded":
                fixed["run_id"] = seeded["run_id"]
            strategies.append(
                operation.as_strategy(generation_mode=mode, headers=headers, path_parameters=fixed).map(_short_wait)
            )
    elif operation.label in ("POST /v1/tasks", "POST /v1/tasks:batch") and mode is GenerationMode.POSITIVE:
        strategies.append(operation.as_strategy(generation_mode=mode, headers=headers).map(_harmless))
    return st.one_of(strategies)


def _caller(
    operation: schemathesis.APIOperation,
    session: requests.Session,
    base_url: str,
    counts: Counter[str],
    statuses: Counter[int],
) -> Callable[[schemathesis.Case], None]:
    """Sends a case and runs the checks on its response, counting both."""
    checks = CHECKS.get_by_names(CHECK_NAMES)

    def call(case: schemathesis.Case) -> None:
        counts[operation.label] += 1
        response = case.call_and_validate(base_url=base_url, session=session, checks=checks, timeout=30)
        statuses[response.status_code] += 1

    return call


def _fuzz(
    strategy: st.SearchStrategy[schemathesis.Case], examples: int, call: Callable[[schemathesis.Case], None]
) -> None:
    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=strategy)
    def run(case: schemathesis.Case) -> None:
        call(case)

    run()


def _coverage(operation: schemathesis.APIOperation, call: Callable[[schemathesis.Case], None]) -> None:
    """Schemathesis' coverage cases (boundary values, each constraint broken once), as ``alice``."""
    schema = operation.schema
    cases = schema.iter_coverage_cases(
        operation,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=schema.config.generation_for(operation=operation),
    )
    for case in cases:
        case.headers = {**(case.headers or {}), **_auth("alice")}
        call(case)


def test_every_operation_answers_only_as_documented(fuzzed_stack: Stack) -> None:
    # Given a running stack with tasks in several states, and the document it serves
    seeded = _seed(fuzzed_stack)
    schema = schemathesis.openapi.from_url(f"{fuzzed_stack.url}/openapi.json", timeout=10)
    load_all_checks()
    # Schemathesis leaves out the operation that serves the document itself (the unit tests validate it).
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = {f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items() for method in item}
    assert {op.label for op in operations} == documented - {"GET /openapi.json"}
    counts: Counter[str] = Counter()
    statuses: dict[str, Counter[int]] = {op.label: Counter() for op in operations}
    failures: dict[str, str] = {}
    started = time.monotonic()

    # When every operation is fuzzed (positive and negative, as a member and as an admin) and gets its coverage
    # cases (boundary values, each constraint broken once)
    with requests.Session() as session:
        for operation in operations:
            call = _caller(operation, session, fuzzed_stack.url, counts, statuses[operation.label])
            plan = [
                (mode, "alice", n) for mode, n in MAX_EXAMPLES.items() if mode.is_positive or _has_inputs(operation)
            ]
            plan += [(GenerationMode.POSITIVE, "admin", ADMIN_EXAMPLES), (GenerationMode.POSITIVE, None, ANONYMOUS)]
            for mode, user, examples in plan:
                try:
                    _fuzz(_strategy(operation, mode, user, seeded), examples, call)
                except (Exception, BaseExceptionGroup) as failure:  # every operation's findings, not the first one's
                    failures[f"{operation.label} ({mode.value}, {user})"] = str(failure)[:3000]
            try:
                _coverage(operation, call)
            except (Exception, BaseExceptionGroup) as failure:
                failures[f"{operation.label} (coverage)"] = str(failure)[:3000]
    elapsed = time.monotonic() - started
    # (the seeded sleep task, if the fuzzer did not cancel it, would hold the executor's shutdown)
    httpx.delete(f"{fuzzed_stack.url}/v1/tasks/{seeded['running']}", headers=_auth("alice"), timeout=10)
    print(f"\nschemathesis: {sum(counts.values())} cases over {len(counts)} operations in {elapsed:.1f} s")
    for label, count in sorted(counts.items()):
        print(f"  {count:4d}  {label:45s} {dict(sorted(statuses[label].items()))}")

    # Then nothing answered 5xx or outside the document, and enough cases ran for that to mean something
    assert not failures, "\n\n".join(f"== {label}\n{text}" for label, text in failures.items())
    assert set(counts) == {op.label for op in operations}
    assert sum(counts.values()) >= MIN_CASES
