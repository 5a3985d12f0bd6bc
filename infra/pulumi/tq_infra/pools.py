"""Executor pools: each a fleet of executors with its own handler modules, image, size, queues, permissions,
secrets and egress (``tq:pools``), read and checked here before anything is built.

A pool ``p`` has the queues ``{prefix}-{p}-{priority}.fifo`` and their dead-letter queues; the ``default`` pool
keeps ``{prefix}-{priority}.fifo``, so a stack from before pools keeps its queues, roles and services.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tq_infra.iam import policy_problems
from tq_infra.network import GATEWAY_ENDPOINTS
from tqcore.domain.model import Priority
from tqcore.settings import DEFAULT_POOL as DEFAULT_POOL
from tqcore.settings import POOL_PATTERN, CoreSettings

#: ``TQ_POOL``'s pattern (the executors refuse another).
POOL_NAME = re.compile(POOL_PATTERN)
#: Fargate's CPU units per task.
FARGATE_CPU = frozenset({256, 512, 1024, 2048, 4096, 8192, 16384})
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: An interface endpoint's service after ``com.amazonaws.<region>.`` (``secretsmanager``, ``ecr.api``), alone.
ENDPOINT = re.compile(r"^(?!com\.)[a-z0-9][a-z0-9.-]{0,62}$")
#: A secret's source: an SSM parameter or a Secrets Manager secret (optionally ``:json-key:version-stage:id``).
SSM_PARAMETER = re.compile(r"^arn:aws[a-z-]*:ssm:[a-z0-9-]+:\d{12}:parameter/\S+$")
SECRETS_MANAGER = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[^:\s]+(:[^:\s]*){0,3}$")
#: Set by the stack for each pool; a pool's ``env`` may not change them (nor what sizes the shared queues).
RESERVED_ENV = frozenset(
    {"TQ_PREFIX", "TQ_REGION", "TQ_POOL", "TQ_HANDLER_MODULES", "TQ_SCRIPT_ALLOW", "TQ_LEASE_S", "TQ_MAX_RECEIVES"}
)
OPEN = frozenset({"0.0.0.0/0", "::/0"})
#: ``tq:pools.<pool>`` keys -> :class:`Pool` fields.
KEYS = {
    "handlerModules": "handler_modules",
    "scripts": "scripts",
    "imageTag": "image_tag",
    "cpu": "cpu",
    "memory": "memory",
    "min": "min_count",
    "max": "max_count",
    "backlogPerTask": "backlog_per_task",
    "env": "env",
    "iamStatements": "iam_statements",
    "managedPolicyArns": "managed_policy_arns",
    "secrets": "secrets",
    "egress": "egress",
}
EGRESS_KEYS = {"nat", "cidrs", "ports", "endpoints"}


@dataclass(frozen=True)
class Egress:
    """Where a pool's handlers may connect beyond tq's own AWS endpoints (none by default)."""

    #: Route the private subnets through a NAT gateway, for ``cidrs``.
    nat: bool = False
    #: The networks the handlers reach through the NAT (never the whole internet: name them).
    cidrs: tuple[str, ...] = ()
    #: TCP ports open to ``cidrs``.
    ports: tuple[int, ...] = (443,)
    #: Interface VPC endpoints the handlers use (``secretsmanager``, ``kms``, ``sts``, ...): no NAT needed.
    endpoints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pool:
    """One executor pool, as ``tq:pools.<name>`` (or, for ``default``, the stack's older keys) describe it."""

    name: str
    #: ``TQ_HANDLER_MODULES``: the modules its executors import (installed in its image).
    handler_modules: tuple[str, ...] = ()
    #: ``TQ_SCRIPT_ALLOW``: the ``script`` type's allow-list; set, its executors run as root (a uid per slot).
    scripts: dict[str, Any] | None = None
    #: The image tag in the pool's ECR repository (the default pool: ``tq:executorImageTag``, in ``executor``).
    image_tag: str | None = None
    cpu: int = 1024
    memory: int = 2048
    min_count: int = 2
    max_count: int = 20
    #: Visible messages over the pool's queues per running task that its autoscaling holds.
    backlog_per_task: int = 20
    #: ``TQ_*`` (or the handlers' own) settings for this pool's executors, over ``tq:env``.
    env: dict[str, str] = field(default_factory=dict)
    #: IAM statements (``Effect``/``Action``/``Resource``) for the handlers, on the pool's task role only.
    iam_statements: tuple[dict[str, Any], ...] = ()
    managed_policy_arns: tuple[str, ...] = ()
    #: Environment variable -> the ARN of an SSM parameter or a Secrets Manager secret (ECS ``secrets``).
    secrets: dict[str, str] = field(default_factory=dict)
    egress: Egress = Egress()

    @property
    def default(self) -> bool:
        """The pool whose queues, service and role keep the names of a stack from before pools."""
        return self.name == DEFAULT_POOL

    @property
    def service(self) -> str:
        """Its resources' name after the prefix: ``executor``, or ``executor-<pool>``."""
        return "executor" if self.default else f"executor-{self.name}"

    def environment(self) -> dict[str, str]:
        """What its executors are told: their pool and task types (and the pool's own settings)."""
        if not self.handler_modules and self.scripts is None:
            raise ValueError(
                f"pool {self.name!r}: set handlerModules and/or scripts (for the default pool: tq:handlerModules"
                " and/or tq:scripts): an executor with no task types refuses to start"
            )
        # The default pool's executors are told nothing new: TQ_POOL's default is theirs.
        pool = {} if self.default else {"TQ_POOL": self.name}
        environment = {**self.env, **pool, "TQ_HANDLER_MODULES": ",".join(self.handler_modules)}
        if self.scripts is not None:
            environment["TQ_SCRIPT_ALLOW"] = json.dumps(self.scripts, sort_keys=True)
        return environment

    def secret_statements(self) -> list[dict[str, Any]]:
        """What the pool's execution role needs to put its secrets into the environment: exactly those."""
        parameters = sorted({arn for arn in self.secrets.values() if SSM_PARAMETER.match(arn)})
        # A Secrets Manager reference may name a JSON key, stage or version after the secret's own ARN.
        secrets = sorted({":".join(arn.split(":")[:7]) for arn in self.secrets.values() if SECRETS_MANAGER.match(arn)})
        statements = []
        if parameters:
            statements.append({"Effect": "Allow", "Action": ["ssm:GetParameters"], "Resource": parameters})
        if secrets:
            statements.append({"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": secrets})
        return statements

    def secret_endpoints(self) -> set[str]:
        """The interface endpoints ECS needs to read the secrets from private subnets without a NAT."""
        return {"ssm" if SSM_PARAMETER.match(arn) else "secretsmanager" for arn in self.secrets.values()}


def queue_names(settings: CoreSettings, pool: str) -> dict[Priority, tuple[str, str]]:
    """Priority -> (queue, dead-letter queue) of one pool, as tqcore names them."""
    return {p: (settings.queue_name(p, pool), settings.dlq_name(p, pool)) for p in Priority}


def parse_pools(raw: dict[str, Any] | None, default: Pool) -> dict[str, Pool]:
    """``tq:pools`` over the default pool (which ``tq:pools.default`` may refine): pool name -> pool, checked."""
    pools = {DEFAULT_POOL: default}
    for name, entry in (raw or {}).items():
        if not isinstance(name, str) or not POOL_NAME.match(name):
            raise ValueError(f"tq:pools: {name!r} is not a pool name ({POOL_NAME.pattern})")
        if not isinstance(entry, dict):
            raise ValueError(f"tq:pools.{name}: an object of {sorted(KEYS)}")
        unknown = set(entry) - set(KEYS)
        if unknown:
            raise ValueError(f"tq:pools.{name}: unknown keys {sorted(unknown)} (known: {sorted(KEYS)})")
        fields = {KEYS[k]: v for k, v in entry.items()}
        base = pools[DEFAULT_POOL] if name == DEFAULT_POOL else Pool(name)
        pools[name] = _checked(_pool(base, name, fields))
    _checked(pools[DEFAULT_POOL])
    return pools


def _pool(base: Pool, name: str, fields: dict[str, Any]) -> Pool:
    where = f"tq:pools.{name}"
    if "egress" in fields:
        egress = fields["egress"]
        if not isinstance(egress, dict) or set(egress) - EGRESS_KEYS:
            raise ValueError(f"{where}.egress: an object of {sorted(EGRESS_KEYS)}")
        fields["egress"] = Egress(
            nat=egress.get("nat") is True,
            cidrs=tuple(egress.get("cidrs") or ()),
            ports=tuple(int(p) for p in egress.get("ports") or (443,)),
            endpoints=tuple(egress.get("endpoints") or ()),
        )
    for key in ("handler_modules", "iam_statements", "managed_policy_arns"):
        if key in fields:
            fields[key] = tuple(fields[key] or ())
    for key in ("cpu", "memory", "min_count", "max_count", "backlog_per_task"):
        if key in fields:
            fields[key] = int(fields[key])
    for key in ("env", "secrets"):
        if key in fields:
            fields[key] = {str(k): str(v) for k, v in (fields[key] or {}).items()}
    return Pool(**{**base.__dict__, **fields, "name": name})


def _checked(pool: Pool) -> Pool:
    """The pool, or ``ValueError`` naming what is wrong with it (before any resource is built)."""
    where = f"pool {pool.name!r}"
    problems = []
    if pool.cpu not in FARGATE_CPU:
        problems.append(f"cpu {pool.cpu} is not a Fargate size {sorted(FARGATE_CPU)}")
    if not 0 <= pool.min_count <= pool.max_count:
        problems.append(f"min {pool.min_count} and max {pool.max_count}: need 0 <= min <= max")
    reserved = sorted(set(pool.env) & RESERVED_ENV)
    if reserved:
        problems.append(f"env sets {reserved}: the stack sets them (sizes go in tq:env)")
    for name, arn in sorted(pool.secrets.items()):
        if not ENV_NAME.match(name) or name in pool.env or name in RESERVED_ENV:
            problems.append(f"secret {name!r} is not a free environment variable name")
        if not (SSM_PARAMETER.match(arn) or SECRETS_MANAGER.match(arn)):
            problems.append(f"secret {name!r}: {arn!r} is not the ARN of an SSM parameter or a Secrets Manager secret")
    statements = [s for s in pool.iam_statements if isinstance(s, dict) and {"Effect", "Action", "Resource"} <= set(s)]
    if len(statements) < len(pool.iam_statements):
        problems.append("each of iamStatements needs Effect, Action and Resource")
    problems += policy_problems("iamStatements", {"Statement": statements})
    problems += [f"managedPolicyArns: {a!r} is no policy ARN" for a in pool.managed_policy_arns if ":policy/" not in a]
    open_cidrs = sorted(set(pool.egress.cidrs) & OPEN)
    if open_cidrs:
        problems.append(f"egress to {open_cidrs}: name the networks the handlers reach instead of the whole internet")
    problems += [
        f"egress endpoint {e!r} is not a service name (as kms, ecr.api)"
        for e in pool.egress.endpoints
        if not ENDPOINT.match(e)
    ]
    problems += [
        f"egress endpoint {e!r}: every task reaches it already (a gateway endpoint)"
        for e in pool.egress.endpoints
        if e in GATEWAY_ENDPOINTS
    ]
    if pool.egress.cidrs and not pool.egress.nat:
        problems.append("egress cidrs need egress.nat: true (the private subnets have no other route out)")
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems))
    return pool
