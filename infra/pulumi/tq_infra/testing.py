"""Offline test harness: Pulumi mocks that record every resource, and a runner that builds under them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi

from tq_infra.checks import Registered
from tq_infra.config import StackConfig

REGION = "eu-west-1"
ACCOUNT = "123456789012"
#: What the program's invokes answer offline.
INVOKES: dict[str, dict[str, Any]] = {
    "aws:index/getRegion:getRegion": {"region": REGION, "name": REGION, "id": REGION},
    "aws:index/getAvailabilityZones:getAvailabilityZones": {"names": [f"{REGION}{z}" for z in "abc"]},
}


class RecordingMocks(pulumi.runtime.Mocks):
    """Echo inputs, add the computed outputs the program reads (``arn``, ``url``, ``name``...), record each."""

    def __init__(self) -> None:
        self.resources: list[Registered] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        """A fake id and outputs for one resource."""
        physical = args.inputs.get("name") or args.inputs.get("bucket") or args.name
        kind = args.typ.split(":")[1].split("/")[0]
        outputs = {
            "arn": f"arn:aws:{kind}:{REGION}:{ACCOUNT}:{physical}",
            "name": physical,
            "url": f"https://{kind}.{REGION}.amazonaws.com/{ACCOUNT}/{physical}",
            "repositoryUrl": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{physical}",
            "dnsName": f"{physical}.{REGION}.elb.amazonaws.com",
            "arnSuffix": f"app/{physical}/0123456789abcdef",
            "prefixListId": f"pl-{physical}",
            "bucket": physical,
            **args.inputs,
        }
        resource_id = f"{args.name}-id"
        self.resources.append(Registered(args.typ, args.name, dict(args.inputs), resource_id))
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        """The canned answer of an invoke."""
        return INVOKES[args.token], []


def run(build: Callable[[], object]) -> list[Registered]:
    """Call ``build`` under fresh mocks, wait for every resource, and return what it registered."""
    mocks = RecordingMocks()
    # Pulumi's runtime runs on the thread's current event loop: an earlier ``asyncio.run`` or ``asyncio.Runner``
    # in the same process (a handler test) leaves none.
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(mocks, project="tq", stack="test", preview=False)
    pulumi.runtime.test(build)()  # type: ignore[no-untyped-call]
    return mocks.resources


def load_stack_file(path: Path) -> StackConfig:
    """The :class:`StackConfig` a ``Pulumi.<stack>.yaml`` gives, read as ``pulumi up`` would read it."""
    import yaml  # type: ignore[import-untyped]

    values = yaml.safe_load(path.read_text())["config"]
    # As the Pulumi CLI hands config to the program: strings as they are, anything else as JSON.
    pulumi.runtime.set_all_config({k: v if isinstance(v, str) else json.dumps(v) for k, v in values.items()})
    try:
        return StackConfig.load()
    finally:
        pulumi.runtime.set_all_config({})
