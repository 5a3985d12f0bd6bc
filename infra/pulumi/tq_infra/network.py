"""The network tier: a VPC of its own, private subnets for the tasks, public ones for the load balancer only.

The tasks reach AWS through VPC endpoints (gateway endpoints for DynamoDB and S3, interface endpoints for SQS,
ECR, CloudWatch Logs and SSM) instead of a NAT gateway: no route to the internet, no per-GB NAT charge. An executor
pool that needs more (``tq:pools.<pool>.egress``) adds interface endpoints by name, or a NAT gateway; a task then
reaches only what its security groups allow (an executor pool's egress group: the networks it names).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import pulumi
import pulumi_aws as aws

#: Interface endpoints the tasks need (ECR's ``dkr`` serves image layers' manifests; the layers come from S3; ECS
#: reads the gateways' console key from SSM).
INTERFACE_ENDPOINTS = ("sqs", "ecr.api", "ecr.dkr", "logs", "ssm")
GATEWAY_ENDPOINTS = ("dynamodb", "s3")
HTTPS = 443


class Network(pulumi.ComponentResource):
    """VPC, subnets, routes, endpoints and the tasks' security group (ALB and services add their own)."""

    def __init__(
        self,
        name: str,
        cidr: str,
        az_count: int,
        region: str,
        opts: pulumi.ResourceOptions | None = None,
        *,
        nat: bool = False,
        endpoints: Iterable[str] = (),
    ) -> None:
        super().__init__("tq:network:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zones = aws.get_availability_zones(state="available").names[:az_count]
        blocks = list(ipaddress.ip_network(cidr).subnets(new_prefix=20))
        self.vpc = aws.ec2.Vpc(
            name, cidr_block=cidr, enable_dns_hostnames=True, enable_dns_support=True, tags={"Name": name}, opts=child
        )
        self.cidr = cidr
        gateway = aws.ec2.InternetGateway(name, vpc_id=self.vpc.id, opts=child)
        public_routes = aws.ec2.RouteTable(f"{name}-public", vpc_id=self.vpc.id, opts=child)
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_routes.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=gateway.id,
            opts=child,
        )
        private_routes = aws.ec2.RouteTable(f"{name}-private", vpc_id=self.vpc.id, opts=child)
        self.public_subnets: list[aws.ec2.Subnet] = []
        self.private_subnets: list[aws.ec2.Subnet] = []
        for n, zone in enumerate(zones):
            for kind, subnets, routes, block in (
                ("public", self.public_subnets, public_routes, blocks[n]),
                ("private", self.private_subnets, private_routes, blocks[8 + n]),
            ):
                subnet = aws.ec2.Subnet(
                    f"{name}-{kind}-{n}",
                    vpc_id=self.vpc.id,
                    cidr_block=str(block),
                    availability_zone=zone,
                    map_public_ip_on_launch=False,
                    tags={"Name": f"{name}-{kind}-{zone}"},
                    opts=child,
                )
                aws.ec2.RouteTableAssociation(
                    f"{name}-{kind}-{n}", subnet_id=subnet.id, route_table_id=routes.id, opts=child
                )
                subnets.append(subnet)

        # The tasks' security group; each service's own rules are added by the compute tier.
        self.tasks_sg = aws.ec2.SecurityGroup(
            f"{name}-tasks", vpc_id=self.vpc.id, description="tq Fargate tasks", opts=child
        )
        endpoints_sg = aws.ec2.SecurityGroup(
            f"{name}-endpoints", vpc_id=self.vpc.id, description="tq VPC interface endpoints", opts=child
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-endpoints-from-tasks",
            security_group_id=endpoints_sg.id,
            referenced_security_group_id=self.tasks_sg.id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-tasks-to-endpoints",
            security_group_id=self.tasks_sg.id,
            referenced_security_group_id=endpoints_sg.id,
            ip_protocol="tcp",
            from_port=HTTPS,
            to_port=HTTPS,
            opts=child,
        )
        if nat:
            self._nat_gateway(name, public_routes, private_routes, child)
        for service in [*INTERFACE_ENDPOINTS, *sorted(set(endpoints) - set(INTERFACE_ENDPOINTS))]:
            aws.ec2.VpcEndpoint(
                f"{name}-{service.replace('.', '-')}",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in self.private_subnets],
                security_group_ids=[endpoints_sg.id],
                opts=child,
            )
        for service in GATEWAY_ENDPOINTS:
            endpoint = aws.ec2.VpcEndpoint(
                f"{name}-{service}",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Gateway",
                route_table_ids=[private_routes.id],
                opts=child,
            )
            # Gateway endpoints are reached at the service's public addresses: allow exactly its prefix list.
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-tasks-to-{service}",
                security_group_id=self.tasks_sg.id,
                prefix_list_id=endpoint.prefix_list_id,
                ip_protocol="tcp",
                from_port=HTTPS,
                to_port=HTTPS,
                opts=child,
            )
        self.register_outputs({"vpcId": self.vpc.id})

    def _nat_gateway(
        self,
        name: str,
        public_routes: aws.ec2.RouteTable,
        private_routes: aws.ec2.RouteTable,
        child: pulumi.ResourceOptions,
    ) -> None:
        """One NAT gateway (in the first zone: egress pauses if that zone fails) as the private subnets' way out.
        The route alone opens nothing: the tasks' groups still allow only the endpoints, and an executor pool's
        egress group the networks it names."""
        address = aws.ec2.Eip(f"{name}-nat", domain="vpc", opts=child)
        gateway = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=address.id,
            subnet_id=self.public_subnets[0].id,
            tags={"Name": f"{name}-nat"},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[public_routes]),
        )
        aws.ec2.Route(
            f"{name}-private-nat",
            route_table_id=private_routes.id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=gateway.id,
            opts=child,
        )
