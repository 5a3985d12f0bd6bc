"""The script allow-list: programs and the arguments each accepts, checked at submit, at PATCH and at run time."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest

from tqcore.domain.access import Principal
from tqcore.domain.commands import SubmitTask, UpdateTask
from tqcore.domain.errors import InvalidPayload
from tqcore.domain.scripts import MAX_ARG_CHARS, ScriptAllowList
from tqcore.testing import FixedClock, InMemoryRegistry, InMemoryTaskStore, RecordingQueue
from tqcore.usecases.service import Catalog, Tasks

pytestmark = pytest.mark.unit

ALICE = Principal("alice", frozenset({"team-a"}))
ALLOW = ScriptAllowList.parse(
    {
        "date": {"args": [r"\+[A-Za-z0-9%:_ .,/-]{1,100}"]},
        "sleep": {"args": [r"[0-9]{1,5}(\.[0-9]{1,3})?"], "min_args": 1},
        "echo": {"rest": r"[A-Za-z0-9][A-Za-z0-9 _.,-]*", "max_args": 3},
        "true": {},
    }
)


@pytest.mark.parametrize(
    "argv",
    [["date"], ["date", "+%Y-%m-%d"], ["sleep", "0.5"], ["echo"], ["echo", "a", "b c", "d"], ["true"]],
)
def test_what_the_list_names_is_accepted(argv: list[str]) -> None:
    assert ALLOW.errors({"argv": argv}) == []
    assert ALLOW.check({"argv": argv}) == argv


@pytest.mark.parametrize(
    ("argv", "loc", "words"),
    [
        (["date", "-f", "/etc/passwd"], ["payload", "argv", 1], ["'-f'", "must match"]),
        (["date", "-f/proc/self/environ"], ["payload", "argv", 1], ["'-f/proc/self/environ'"]),
        (["date", "+%s", "/etc/passwd"], ["payload", "argv", 2], ["one more than the program accepts (1)"]),
        (["cat", "/etc/passwd"], ["payload", "argv", 0], ["'cat' is not on the allow-list", "date, echo, sleep"]),
        (["/bin/date"], ["payload", "argv", 0], ["not on the allow-list"]),
        (["sleep"], ["payload", "argv"], ["at least 1"]),
        (["sleep", "1; cat /etc/passwd"], ["payload", "argv", 1], ["must match"]),
        (["echo", "-e", "x"], ["payload", "argv", 1], ["'-e'"]),
        (["echo", "a", "b", "c", "d"], ["payload", "argv", 4], ["one more"]),
        (["true", "x"], ["payload", "argv", 1], ["accepts (0)"]),
        (["echo", "a" * (MAX_ARG_CHARS + 1)], ["payload", "argv", 1], ["too long"]),
        (["echo", "a\0b"], ["payload", "argv", 1], ["NUL"]),
    ],
)
def test_anything_else_is_refused_naming_the_refused_argument(
    argv: list[str], loc: list[Any], words: list[str]
) -> None:
    with pytest.raises(InvalidPayload) as refused:
        ALLOW.check({"argv": argv})
    assert loc in [e["loc"] for e in refused.value.errors]
    for word in words:
        assert word in refused.value.message


@pytest.mark.parametrize("payload", [None, {}, {"argv": []}, {"argv": "date"}, {"argv": ["date", 1]}, ["date"]])
def test_a_payload_without_a_list_of_strings_is_refused(payload: Any) -> None:
    assert [e["loc"] for e in ALLOW.errors(payload)] == [["payload", "argv"]]


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("date", "not JSON"),
        ("[]", "JSON object"),
        ('{"date": {"args": ["("]}}', "not a regular expression"),
        ('{"../bin/sh": {}}', "programs"),
        ('{"date": {"argz": []}}', "argz"),
        ('{"date": {"min_args": 2}}', "min_args"),
        ('{"date": {"path": "bin/date"}}', "path"),
    ],
)
def test_an_allow_list_that_cannot_work_is_refused_in_one_line(raw: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as refused:
        ScriptAllowList.parse(raw)
    assert "\n" not in str(refused.value)


def test_the_published_form_reads_back_the_same() -> None:
    assert ScriptAllowList.parse(ALLOW.to_json()) == ALLOW
    assert ScriptAllowList.parse({"programs": {"true": {}}}) == ScriptAllowList.parse({"true": {}})


# ------------------------------------------------------------------------------------ at submit and at PATCH
class Env:
    def __init__(self, spec: str | None) -> None:
        self.registry = InMemoryRegistry(["echo"])
        self.registry.register_types(["script"], by="executor-1", specs={"script": spec} if spec else None)
        ids = (f"t-{n}" for n in itertools.count())
        self.tasks = Tasks(
            InMemoryTaskStore(), RecordingQueue(), Catalog(self.registry, ttl_s=60), FixedClock(), ids.__next__
        )

    def submit(self, argv: list[str]) -> str:
        body = SubmitTask(type="script", group="team-a", payload={"argv": argv})
        return self.tasks.submit(body, ALICE).task.id


def test_a_submit_is_checked_against_the_published_list() -> None:
    env = Env(ALLOW.to_json())
    assert env.submit(["date", "+%Y"])
    with pytest.raises(InvalidPayload, match="'-f'"):
        env.submit(["date", "-f", "/etc/passwd"])


def test_a_patch_cannot_slip_in_what_a_submit_may_not() -> None:
    env = Env(ALLOW.to_json())
    task_id = env.submit(["sleep", "1"])
    with pytest.raises(InvalidPayload, match="not on the allow-list"):
        env.tasks.update(task_id, UpdateTask(payload={"argv": ["cat", "/etc/passwd"]}), ALICE)
    assert env.tasks.update(task_id, UpdateTask(payload={"argv": ["sleep", "2"]}), ALICE).payload == {
        "argv": ["sleep", "2"]
    }
    # other types' payloads stay free
    echo = env.tasks.submit(SubmitTask(type="echo", group="team-a", payload={"argv": ["cat"]}), ALICE).task
    assert env.tasks.update(echo.id, UpdateTask(payload=[1, 2]), ALICE).payload == [1, 2]


def test_a_list_published_by_a_newer_executor_is_read_ignoring_fields_this_version_does_not_know() -> None:
    # a rolling deploy: a newer executor published its list with a field of a later version, at both levels
    newer = json.loads(ALLOW.to_json())
    newer["programs"]["date"]["max_arg_chars"] = 30
    newer["signed_by"] = "executor-9"
    env = Env(json.dumps(newer))
    assert env.submit(["date", "+%Y"])
    with pytest.raises(InvalidPayload, match="'-f'"):
        env.submit(["date", "-f", "/etc/passwd"])
    # while the operator's own setting is still read strictly
    with pytest.raises(ValueError, match="max_arg_chars"):
        ScriptAllowList.parse(json.dumps(newer["programs"]))


def test_a_catalog_item_without_a_list_refuses_every_script() -> None:
    # an executor from before allow-lists registered the type: fail closed
    with pytest.raises(InvalidPayload, match="no allow-list"):
        Env(None).submit(["true"])


def test_a_widened_list_is_seen_by_a_cached_catalog_on_its_first_refusal() -> None:
    env = Env(ScriptAllowList.parse({"true": {}}).to_json())
    env.submit(["true"])  # the catalog is now cached for 60 s
    env.registry.register_types(["script"], by="executor-2", specs={"script": ALLOW.to_json()})
    time.sleep(1.1)  # a refusal re-reads the catalog at most once a second, as a miss does
    assert env.submit(["date", "+%Y"])  # refused by the cached list, accepted by the fresh one
