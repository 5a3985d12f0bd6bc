"""Executor pools under mocks: a stack with a pool beside the default one, given extra IAM, a managed policy,
secrets and egress; each pool's queues, service, roles and autoscaling, and the checks still clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tq_infra import checks, iam
from tq_infra.aws_calls import SERVICES, operations_of
from tq_infra.checks import Registered
from tq_infra.config import StackConfig
from tq_infra.pools import DEFAULT_POOL, Pool, parse_pools
from tq_infra.testing import ACCOUNT, REGION, load_stack_file, run

pytestmark = [
    pytest.mark.unit,
    pytest.mark.filterwarnings("ignore:.*has been deprecated in favor of:DeprecationWarning"),
]

PARAMETER = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/thumbs/api-key"
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:thumbs-db-AbCdEf"
STATEMENT = {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["arn:aws:s3:::acme-images/*"]}
MANAGED = "arn:aws:iam::aws:policy/AmazonRekognitionReadOnlyAccess"
POOLS: dict[str, Any] = {
    "thumbnails": {
        "handlerModules": ["thumbnails.handlers"],
        "imageTag": "thumbs-1.0.0",
        "cpu": 2048,
        "memory": 4096,
        "min": 0,
        "max": 8,
        "backlogPerTask": 5,
        "env": {"TQ_THREADS": "4"},
        "iamStatements": [STATEMENT],
        "managedPolicyArns": [MANAGED],
        "secrets": {"THUMBS_API_KEY": PARAMETER, "THUMBS_DB_PASSWORD": f"{SECRET}:password::"},
        "egress": {"nat": True, "cidrs": ["203.0.113.0/24"], "ports": [443], "endpoints": ["kms"]},
    },
}
CONFIG = StackConfig(
    prefix="tq-test",
    image_tags={s: f"{s}-1.2.3" for s in SERVICES},
    certificate_arn="arn:aws:acm:eu-west-1:123456789012:certificate/test",
    handler_modules=["tq_executor.demo"],
    pools=POOLS,
)


@pytest.fixture(scope="module")
def stack() -> list[Registered]:
    from tq_infra.stack import build

    return run(lambda: build(CONFIG))


def named(stack: list[Registered], typ: str) -> dict[str, Registered]:
    return {r.name: r for r in checks.of_type(stack, typ)}


def containers(stack: list[Registered]) -> dict[str, tuple[Registered, dict[str, Any]]]:
    """Task definition family -> (definition, its one container)."""
    found = {}
    for definition in checks.of_type(stack, "aws:ecs/taskDefinition:TaskDefinition"):
        (container,) = json.loads(definition.inputs["containerDefinitions"])
        found[definition.inputs["family"]] = (definition, container)
    return found


def policy(stack: list[Registered], name: str) -> dict[str, Any]:
    return json.loads(named(stack, "aws:iam/rolePolicy:RolePolicy")[name].inputs["policy"])


def sqs_resources(document: dict[str, Any]) -> set[str]:
    return {r for s in document["Statement"] if s["Action"][0].startswith("sqs:") for r in s["Resource"]}


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"


DEFAULT_QUEUES = {f"tq-test-{p}{d}.fifo" for p in ("high", "normal", "low") for d in ("", "-dlq")}
POOL_QUEUES = {f"tq-test-thumbnails-{p}{d}.fifo" for p in ("high", "normal", "low") for d in ("", "-dlq")}


def test_each_pool_has_its_own_queues_and_the_default_keeps_its_names(stack: list[Registered]) -> None:
    names = {q.inputs["name"] for q in checks.of_type(stack, "aws:sqs/queue:Queue")}
    assert names == DEFAULT_QUEUES | POOL_QUEUES
    assert checks.queue_problems(stack) == []


def test_each_pool_runs_its_own_service_told_its_pool_and_handler_modules(stack: list[Registered]) -> None:
    found = containers(stack)
    assert set(found) == {"tq-test-gateway", "tq-test-scheduler", "tq-test-reaper", *POOL_SERVICES}
    _, default = found["tq-test-executor"]
    env = {e["name"]: e["value"] for e in default["environment"]}
    assert env["TQ_HANDLER_MODULES"] == "tq_executor.demo"
    assert "TQ_POOL" not in env  # the default pool's executors are told nothing new
    definition, thumbs = found["tq-test-executor-thumbnails"]
    env = {e["name"]: e["value"] for e in thumbs["environment"]}
    assert (env["TQ_POOL"], env["TQ_HANDLER_MODULES"], env["TQ_THREADS"]) == ("thumbnails", "thumbnails.handlers", "4")
    assert thumbs["image"].endswith("/tq-test-executor-thumbnails:thumbs-1.0.0")
    assert (definition.inputs["cpu"], definition.inputs["memory"]) == ("2048", "4096")
    services = named(stack, "aws:ecs/service:Service")
    assert services["tq-test-executor-thumbnails"].inputs["desiredCount"] == 0
    repositories = {r.inputs["name"] for r in checks.of_type(stack, "aws:ecr/repository:Repository")}
    assert "tq-test-executor-thumbnails" in repositories


POOL_SERVICES = {"tq-test-executor", "tq-test-executor-thumbnails"}


def test_a_pool_s_role_reaches_only_its_own_queues_and_the_others_every_pool_s(stack: list[Registered]) -> None:
    assert sqs_resources(policy(stack, "tq-test-executor")) == {queue_arn(q) for q in DEFAULT_QUEUES}
    assert sqs_resources(policy(stack, "tq-test-executor-thumbnails")) == {queue_arn(q) for q in POOL_QUEUES}
    for service in ("gateway", "scheduler", "reaper"):
        assert sqs_resources(policy(stack, f"tq-test-{service}")) == {
            queue_arn(q) for q in DEFAULT_QUEUES | POOL_QUEUES
        }, service


def test_the_handlers_permissions_go_to_their_pool_s_role_alone(stack: list[Registered]) -> None:
    # The executor's own policy stays exactly the calls its code makes; the handlers' statements sit apart
    main = policy(stack, "tq-test-executor-thumbnails")
    assert {a for s in main["Statement"] for a in s["Action"]} == iam.actions_of(operations_of("executor"))
    assert policy(stack, "tq-test-executor-thumbnails-handlers")["Statement"] == [STATEMENT]
    handler_policies = [n for n in named(stack, "aws:iam/rolePolicy:RolePolicy") if n.endswith("-handlers")]
    assert handler_policies == ["tq-test-executor-thumbnails-handlers"]
    (attachment,) = checks.of_type(stack, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs["policyArn"] == MANAGED
    assert attachment.inputs["role"] == "tq-test-executor-thumbnails"
    assert checks.iam_problems(stack) == []


def test_secrets_reach_the_environment_and_only_the_pool_s_execution_role_reads_them(stack: list[Registered]) -> None:
    definition, container = containers(stack)["tq-test-executor-thumbnails"]
    assert container["secrets"] == [
        {"name": "THUMBS_API_KEY", "valueFrom": PARAMETER},
        {"name": "THUMBS_DB_PASSWORD", "valueFrom": f"{SECRET}:password::"},
    ]
    statements = policy(stack, "tq-test-executor-thumbnails-execution")["Statement"]
    reads = {a: s["Resource"] for s in statements for a in s["Action"] if not a.startswith(("ecr:", "logs:"))}
    assert reads == {"ssm:GetParameters": [PARAMETER], "secretsmanager:GetSecretValue": [SECRET]}
    assert definition.inputs["executionRoleArn"].endswith(":tq-test-executor-thumbnails-execution")
    shared = policy(stack, "tq-test-execution")["Statement"]
    assert not [a for s in shared for a in s["Action"] if a.startswith(("ssm:", "secretsmanager:"))]
    for family, (_, other) in containers(stack).items():
        # (the gateway reads the console's key: test_stack.py)
        assert family in ("tq-test-executor-thumbnails", "tq-test-gateway") or "secrets" not in other
    # ECS reads them from private subnets through their endpoints
    endpoints = {r.inputs["serviceName"] for r in checks.of_type(stack, "aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert {f"com.amazonaws.{REGION}.{s}" for s in ("ssm", "secretsmanager", "kms")} <= endpoints


def test_egress_is_a_nat_gateway_and_a_group_naming_the_pool_s_networks(stack: list[Registered]) -> None:
    assert len(checks.of_type(stack, "aws:ec2/natGateway:NatGateway")) == 1
    routes = [r.inputs for r in checks.of_type(stack, "aws:ec2/route:Route") if r.inputs.get("natGatewayId")]
    assert [r["destinationCidrBlock"] for r in routes] == ["0.0.0.0/0"]
    rules = [
        r.inputs
        for r in checks.of_type(stack, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r.inputs.get("cidrIpv4") == "203.0.113.0/24"
    ]
    assert [(r["fromPort"], r["toPort"]) for r in rules] == [(443, 443)]
    group = rules[0]["securityGroupId"]
    services = named(stack, "aws:ecs/service:Service")
    with_group = {n for n, s in services.items() if group in s.inputs["networkConfiguration"]["securityGroups"]}
    assert with_group == {"tq-test-executor-thumbnails"}
    assert checks.security_group_problems(stack) == []


def test_each_pool_scales_on_its_own_queues_within_its_bounds(stack: list[Registered]) -> None:
    targets = named(stack, "aws:appautoscaling/target:Target")
    assert (
        targets["tq-test-executor-thumbnails"].inputs["minCapacity"],
        targets["tq-test-executor-thumbnails"].inputs["maxCapacity"],
    ) == (0, 8)
    policies = named(stack, "aws:appautoscaling/policy:Policy")
    for pool, queues in (("executor", DEFAULT_QUEUES), ("executor-thumbnails", POOL_QUEUES)):
        spec = policies[f"tq-test-{pool}-backlog"].inputs["targetTrackingScalingPolicyConfiguration"]
        metrics = spec["customizedMetricSpecification"]["metrics"]
        read = {
            d["value"]
            for m in metrics
            if "metricStat" in m
            for d in m["metricStat"]["metric"]["dimensions"]
            if d["name"] == "QueueName"
        }
        assert read == {q for q in queues if "-dlq" not in q}, pool
    assert (
        policies["tq-test-executor-thumbnails-backlog"].inputs["targetTrackingScalingPolicyConfiguration"][
            "targetValue"
        ]
        == 5
    )


def test_the_stack_without_pools_builds_no_nat_and_no_pool_resources() -> None:
    from tq_infra.stack import build

    plain = run(lambda: build(StackConfig(**{**CONFIG.__dict__, "pools": None})))
    assert not checks.of_type(plain, "aws:ec2/natGateway:NatGateway")
    assert not checks.of_type(plain, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert {q.inputs["name"] for q in checks.of_type(plain, "aws:sqs/queue:Queue")} == DEFAULT_QUEUES


BASE = Pool(DEFAULT_POOL, handler_modules=("a",))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"iamStatements": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::b/*"]}]}, "wildcard"),
        ({"iamStatements": [{"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": ["*"]}]}, "'\\*' resource"),
        ({"iamStatements": [{"Action": ["s3:GetObject"]}]}, "needs Effect, Action and Resource"),
        ({"egress": {"nat": True, "cidrs": ["0.0.0.0/0"]}}, "instead of the whole internet"),
        ({"egress": {"cidrs": ["203.0.113.0/24"]}}, "need egress.nat"),
        ({"egress": {"nat": True, "wide": True}}, "egress: an object"),
        ({"egress": {"endpoints": ["s3"]}}, "reaches it already"),
        ({"egress": {"endpoints": ["com.amazonaws.eu-west-1.kms"]}}, "not a service name"),
        ({"secrets": {"KEY": "arn:aws:s3:::bucket/key"}}, "not the ARN of an SSM parameter"),
        ({"secrets": {"TQ_PREFIX": PARAMETER}}, "not a free environment variable"),
        ({"env": {"TQ_LEASE_S": "60"}}, "the stack sets them"),
        ({"cpu": 1000}, "not a Fargate size"),
        ({"min": 3, "max": 2}, "0 <= min <= max"),
        ({"managedPolicyArns": ["AdministratorAccess"]}, "no policy ARN"),
        ({"handlerModule": ["a"]}, "unknown keys"),
    ],
)
def test_a_pool_config_that_would_be_wrong_is_refused_before_anything_is_built(
    entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pools({"p": {"handlerModules": ["a"], **entry}}, BASE)


def test_a_pool_name_that_is_no_tq_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="not a pool name"):
        parse_pools({"Thumbs_1": {"handlerModules": ["a"]}}, BASE)


def test_tq_pools_default_refines_the_default_pool() -> None:
    from tq_infra.stack import build

    config = StackConfig(**{**CONFIG.__dict__, "pools": {"default": {"imageTag": "mine-1", "max": 3}}})
    (_, container) = containers(run(lambda: build(config)))["tq-test-executor"]
    assert container["image"].endswith("/tq-test-executor:mine-1")
    pools = parse_pools({"default": {"max": 3, "env": {"TQ_THREADS": "2"}}}, BASE)
    assert (pools["default"].handler_modules, pools["default"].max_count, pools["default"].env) == (
        ("a",),
        3,
        {"TQ_THREADS": "2"},
    )


def test_a_pool_without_an_image_tag_is_refused() -> None:
    from tq_infra.stack import build

    config = StackConfig(**{**CONFIG.__dict__, "pools": {"b": {"handlerModules": ["b.handlers"]}}})
    with pytest.raises(Exception, match="set imageTag"):
        run(lambda: build(config))


def test_no_executor_role_reaches_another_pool_s_queues(stack: list[Registered]) -> None:
    assert checks.pool_queue_problems(stack) == []


def test_an_executor_role_reaching_another_pool_s_queues_is_caught() -> None:
    def build() -> None:
        import pulumi_aws as aws

        role = aws.iam.Role("tq-x-executor-b", assume_role_policy=iam.assume_role_policy("ecs-tasks.amazonaws.com"))
        aws.ecs.TaskDefinition(
            "tq-x-executor-b",
            family="tq-x-executor-b",
            task_role_arn=role.arn,
            container_definitions=json.dumps(
                [
                    {
                        "name": "executor",
                        "environment": [{"name": "TQ_PREFIX", "value": "tq-x"}, {"name": "TQ_POOL", "value": "b"}],
                    }
                ]
            ),
        )
        queues = [queue_arn("tq-x-b-high.fifo"), queue_arn("tq-x-high.fifo")]
        aws.iam.RolePolicy(
            "tq-x-executor-b",
            role=role.id,
            policy=iam.document([{"Effect": "Allow", "Action": ["sqs:ReceiveMessage"], "Resource": queues}]),
        )

    assert checks.pool_queue_problems(run(build)) == [
        f"tq-x-executor-b: pool 'b' reaches {queue_arn('tq-x-high.fifo')}"
    ]


REPO = Path(__file__).resolve().parents[3]
STACK_FILES = [
    REPO / "infra" / "pulumi" / "Pulumi.dev.yaml",
    REPO / "infra" / "pulumi" / "Pulumi.prod.yaml",
    REPO / "examples" / "thumbnails" / "Pulumi.thumbnails.yaml",
]


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_each_stack_file_builds_and_passes_every_check(path: Path) -> None:
    from tq_infra.stack import build

    built = run(lambda: build(load_stack_file(path)))
    for check in (
        checks.queue_problems,
        checks.iam_problems,
        checks.security_group_problems,
        checks.pool_queue_problems,
        checks.bucket_problems,
        checks.table_problems,
    ):
        assert check(built) == [], check.__name__


def test_the_example_package_s_stack_config_gives_its_pool_its_modules_and_secret() -> None:
    from tq_infra.stack import build

    config = load_stack_file(STACK_FILES[-1])
    assert set(config.executor_pools) == {"default", "thumbnails"}
    example = run(lambda: build(config))
    (_, container) = containers(example)[f"{config.prefix}-executor-thumbnails"]
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert (env["TQ_POOL"], env["TQ_HANDLER_MODULES"]) == ("thumbnails", "thumbnails.handlers")
    assert [s["name"] for s in container["secrets"]] == ["THUMBS_CDN_TOKEN"]
