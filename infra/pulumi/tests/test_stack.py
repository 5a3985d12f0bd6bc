"""The Pulumi program under mocks, offline: inventory, queues, table, bucket, IAM, security groups; and the
checks catching flawed variants built with the same builders."""

from __future__ import annotations

import json

import pytest

from tq_infra import checks, iam
from tq_infra.aws_calls import SERVICES, Operation, operations_of
from tq_infra.checks import Registered
from tq_infra.config import StackConfig
from tq_infra.testing import run

pytestmark = [
    pytest.mark.unit,
    # pulumi_aws warns of its own deprecated V2 aliases as its s3 package loads: not about this program.
    pytest.mark.filterwarnings("ignore:.*has been deprecated in favor of:DeprecationWarning"),
]

CONFIG = StackConfig(
    prefix="tq-test",
    image_tags={s: f"{s}-1.2.3" for s in SERVICES},
    certificate_arn="arn:aws:acm:eu-west-1:123456789012:certificate/test",
    replica_regions=["eu-central-1"],
    handler_modules=["acme.handlers"],
    scripts={"date": {"args": [r"\+[%A-Za-z:-]{1,40}"]}},
)


@pytest.fixture(scope="module")
def stack() -> list[Registered]:
    from tq_infra.stack import build

    return run(lambda: build(CONFIG))


def test_the_stack_has_every_resource_the_issue_names(stack: list[Registered]) -> None:
    counts: dict[str, int] = {}
    for r in stack:
        counts[r.typ] = counts.get(r.typ, 0) + 1
    assert counts["aws:sqs/queue:Queue"] == 6  # three priorities, each with a dead-letter queue
    assert counts["aws:dynamodb/table:Table"] == 1
    assert counts["aws:s3/bucket:Bucket"] == 1
    assert counts["aws:ecs/service:Service"] == 4
    assert counts["aws:ecs/taskDefinition:TaskDefinition"] == 4
    assert counts["aws:ecr/repository:Repository"] == 4
    assert counts["aws:cloudwatch/logGroup:LogGroup"] == 4
    assert counts["aws:iam/role:Role"] == 6  # a task role per service, the execution role and the gateway's
    assert counts["aws:lb/listener:Listener"] == 1
    assert counts["aws:appautoscaling/policy:Policy"] == 2
    endpoints = {
        r.inputs["serviceName"].rsplit(".", 1)[-1] for r in checks.of_type(stack, "aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert {"dynamodb", "sqs", "s3", "api", "dkr", "logs"} <= endpoints
    assert not [r for r in stack if r.typ.startswith("aws:ec2/natGateway")]
    assert all(
        g["retentionInDays"] == CONFIG.log_retention_days
        for g in (r.inputs for r in checks.of_type(stack, "aws:cloudwatch/logGroup:LogGroup"))
    )


def test_the_listener_is_https_with_the_configured_certificate(stack: list[Registered]) -> None:
    (listener,) = checks.of_type(stack, "aws:lb/listener:Listener")
    assert (listener.inputs["protocol"], listener.inputs["port"]) == ("HTTPS", 443)
    assert listener.inputs["certificateArn"] == CONFIG.certificate_arn


def test_containers_run_the_configured_image_tags(stack: list[Registered]) -> None:
    for definition in checks.of_type(stack, "aws:ecs/taskDefinition:TaskDefinition"):
        (container,) = json.loads(definition.inputs["containerDefinitions"])
        assert container["image"].endswith(f"-{container['name']}:{CONFIG.image_tags[container['name']]}")
        env = {e["name"]: e["value"] for e in container["environment"]}
        assert env["TQ_PREFIX"] == CONFIG.prefix


def test_the_gateway_trusts_the_one_proxy_in_front_of_it(stack: list[Registered]) -> None:
    # The ALB appends the client's address to X-Forwarded-For, and the gateway takes that one entry, no more
    (alb,) = checks.of_type(stack, "aws:lb/loadBalancer:LoadBalancer")
    assert alb.inputs["xffHeaderProcessingMode"] == "append"
    hops = {}
    for definition in checks.of_type(stack, "aws:ecs/taskDefinition:TaskDefinition"):
        (container,) = json.loads(definition.inputs["containerDefinitions"])
        hops[container["name"]] = {e["name"]: e["value"] for e in container["environment"]}.get("TQ_TRUSTED_PROXY_HOPS")
    assert hops == {service: ("1" if service == "gateway" else None) for service in hops}
    assert hops["gateway"] == "1"


def test_every_gateway_replica_gets_the_one_console_key_only_its_execution_role_reads(stack: list[Registered]) -> None:
    (parameter,) = checks.of_type(stack, "aws:ssm/parameter:Parameter")
    assert parameter.inputs["type"] == "SecureString"
    secret = parameter.inputs["value"]  # a Pulumi secret (encrypted in the stack's state): {<signature>, value}
    assert isinstance(secret, dict)
    assert len(secret["value"]) >= 32
    arn = f"arn:aws:ssm:eu-west-1:123456789012:{parameter.inputs['name']}"
    secrets = {}
    for definition in checks.of_type(stack, "aws:ecs/taskDefinition:TaskDefinition"):
        (container,) = json.loads(definition.inputs["containerDefinitions"])
        secrets[container["name"]] = container.get("secrets")
        assert "TQ_CONSOLE_SECRET" not in {e["name"] for e in container["environment"]}  # never in clear
        if container["name"] == "gateway":
            assert definition.inputs["executionRoleArn"].endswith(":tq-test-gateway-execution")
    assert secrets.pop("gateway") == [{"name": "TQ_CONSOLE_SECRET", "valueFrom": arn}]
    assert set(secrets.values()) == {None}
    readers = {
        r.name
        for r in checks.of_type(stack, "aws:iam/rolePolicy:RolePolicy")
        if arn in r.inputs["policy"] or "ssm:" in r.inputs["policy"]
    }
    assert readers == {"tq-test-gateway-execution"}
    endpoints = {r.inputs["serviceName"] for r in checks.of_type(stack, "aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert "com.amazonaws.eu-west-1.ssm" in endpoints  # ECS reads it from private subnets


def test_a_console_key_in_tq_env_is_refused() -> None:
    from dataclasses import replace

    from tq_infra.stack import build

    config = replace(CONFIG, env={"TQ_CONSOLE_SECRET": "x" * 40})
    with pytest.raises(Exception, match="TQ_CONSOLE_SECRET"):
        run(lambda: build(config))


def test_every_queue_is_fifo_and_redrives(stack: list[Registered]) -> None:
    assert checks.queue_problems(stack) == []


def test_the_table_has_pitr_ttl_and_the_indexes(stack: list[Registered]) -> None:
    assert checks.table_problems(stack) == []
    (table,) = checks.of_type(stack, "aws:dynamodb/table:Table")
    assert [r["regionName"] for r in table.inputs["replicas"]] == CONFIG.replica_regions


def test_the_bucket_is_encrypted_private_and_expires_logs(stack: list[Registered]) -> None:
    assert checks.bucket_problems(stack) == []


def test_no_wildcard_actions_and_star_resources_only_where_aws_requires(stack: list[Registered]) -> None:
    assert checks.iam_problems(stack) == []


def test_only_the_load_balancer_listener_is_open_to_the_internet(stack: list[Registered]) -> None:
    assert checks.security_group_problems(stack) == []


def test_each_task_role_allows_exactly_the_calls_its_code_makes(stack: list[Registered]) -> None:
    policies = {r.name: json.loads(r.inputs["policy"]) for r in checks.of_type(stack, "aws:iam/rolePolicy:RolePolicy")}
    for service in SERVICES:
        allowed = {a for s in policies[f"{CONFIG.prefix}-{service}"]["Statement"] for a in s["Action"]}
        assert allowed == iam.actions_of(operations_of(service)), service


def test_a_queue_without_a_redrive_policy_is_caught() -> None:
    from tq_infra.data import Queues
    from tqcore.bootstrap import queue_attributes
    from tqcore.settings import CoreSettings

    def no_redrive(settings: CoreSettings, dlq_arn: str) -> dict[str, str]:
        return {k: v for k, v in queue_attributes(settings, dlq_arn).items() if k != "RedrivePolicy"}

    flawed = run(lambda: Queues("bad", CoreSettings(prefix="bad"), queue_attributes=no_redrive))
    assert len(checks.queue_problems(flawed)) == 3


def test_a_role_with_a_wildcard_action_or_resource_is_caught() -> None:
    resources = iam.AppResources("arn:aws:dynamodb:r:1:table/t", ["arn:aws:sqs:r:1:q.fifo"], "arn:aws:s3:::b")

    def build() -> None:
        import pulumi_aws as aws

        aws.iam.RolePolicy("bad", role="r", policy=iam.task_policy({Operation("sqs", "*")}, resources))
        aws.iam.RolePolicy(
            "star",
            role="r",
            policy=iam.document([{"Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": ["*"]}]),
        )

    problems = checks.iam_problems(run(build))
    assert problems == ["bad: wildcard action 'sqs:*'", "star: '*' resource for ['sqs:SendMessage']"]


def test_an_ingress_open_to_the_internet_off_the_listener_is_caught() -> None:
    def build() -> None:
        import pulumi_aws as aws

        aws.vpc.SecurityGroupIngressRule(
            "ssh", security_group_id="sg-1", ip_protocol="tcp", from_port=22, to_port=22, cidr_ipv4="0.0.0.0/0"
        )

    assert checks.security_group_problems(run(build)) == ["ssh: open to the internet"]


def test_a_bucket_without_its_configurations_is_caught() -> None:
    def build() -> None:
        import pulumi_aws as aws

        aws.s3.Bucket("bare", bucket="bare")

    assert checks.bucket_problems(run(build)) == [
        "bare: no encryption configuration",
        "bare: no lifecycle configuration",
        "bare: no public-access-block configuration",
    ]


def test_the_load_balancer_checks_the_gateway_process_not_the_whole_system(stack: list[Registered]) -> None:
    # /readyz needs every other service alive: a reaper down must not take every gateway out of the ALB
    (group,) = checks.of_type(stack, "aws:lb/targetGroup:TargetGroup")
    assert group.inputs["healthCheck"]["path"] == "/healthz"


def test_every_container_has_a_health_check_ecs_runs(stack: list[Registered]) -> None:
    for definition in checks.of_type(stack, "aws:ecs/taskDefinition:TaskDefinition"):
        (container,) = json.loads(definition.inputs["containerDefinitions"])
        probe = " ".join(container["healthCheck"]["command"])
        assert ("/healthz" if container["name"] == "gateway" else ":9100/metrics") in probe, probe


def test_a_role_that_reads_objects_may_list_the_bucket_so_a_missing_log_is_a_404(stack: list[Registered]) -> None:
    policies = {r.name: json.loads(r.inputs["policy"]) for r in checks.of_type(stack, "aws:iam/rolePolicy:RolePolicy")}
    statements = policies[f"{CONFIG.prefix}-gateway"]["Statement"]
    listing = [s for s in statements if "s3:ListBucket" in s["Action"]]
    assert listing, statements
    # on the bucket itself, not its objects
    assert all(not r.endswith("/*") for s in listing for r in s["Resource"])


def test_the_services_settings_come_from_tq_env_and_size_the_queues() -> None:
    from tq_infra.stack import service_settings

    config = StackConfig(prefix="tq-x", image_tags={}, certificate_arn="arn", env={"TQ_LEASE_S": "45"})
    settings = service_settings(config, "eu-west-1")
    assert (settings.prefix, settings.region, settings.lease_s) == ("tq-x", "eu-west-1", 45)

    from tq_infra.data import Queues

    queues = checks.of_type(run(lambda: Queues("x", settings)), "aws:sqs/queue:Queue")
    assert {q.inputs.get("visibilityTimeoutSeconds") for q in queues if "dlq" not in q.inputs["name"]} == {45}


def test_the_executors_run_the_configured_task_types_and_as_root_only_for_scripts(stack: list[Registered]) -> None:
    containers = {
        c["name"]: c
        for d in checks.of_type(stack, "aws:ecs/taskDefinition:TaskDefinition")
        for c in json.loads(d.inputs["containerDefinitions"])
    }
    env = {e["name"]: e["value"] for e in containers["executor"]["environment"]}
    assert env["TQ_HANDLER_MODULES"] == "acme.handlers"
    assert json.loads(env["TQ_SCRIPT_ALLOW"]) == CONFIG.scripts
    assert containers["executor"]["user"] == "0"  # to give each slot's scripts an unprivileged uid of their own
    assert all("user" not in c for name, c in containers.items() if name != "executor")


def test_a_deployment_naming_no_task_types_is_refused() -> None:
    from tq_infra.config import executor_environment

    with pytest.raises(ValueError, match="tq:handlerModules"):
        executor_environment(StackConfig(prefix="tq-x", image_tags={}, certificate_arn="arn"))
    plain = executor_environment(
        StackConfig(prefix="tq-x", image_tags={}, certificate_arn="arn", handler_modules=["a", "b"])
    )
    assert plain == {"TQ_HANDLER_MODULES": "a,b"}


def test_the_executors_role_reaches_only_the_default_pool_s_queues(stack: list[Registered]) -> None:
    assert checks.pool_queue_problems(stack) == []
