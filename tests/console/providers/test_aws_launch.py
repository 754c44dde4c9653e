"""Launching through the aws provider against moto, behind the fault proxy: tags on the
instance and its disk, ClientToken idempotency, all-or-nothing counts, spot, placement."""

from __future__ import annotations

import pytest

from tests.console.providers.helpers import DUMMY, raw_ec2, request, tags_of
from tests.fakes.ec2_faults import Ec2FaultProxy
from tidectl.console.providers.aws import AwsProvider
from tidectl.console.providers.base import InstanceState, InvalidRequestError, ownership_tags


async def test_launch_tags_the_instances_and_their_volumes(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    launch = request(count=2)
    instances = await provider.launch(launch)

    assert len(instances) == 2
    assert all(dict(i.tags) == dict(launch.tags) for i in instances)
    # What EC2 itself holds, read without the provider: the instances and their disks.
    client = raw_ec2(ec2.url)
    ids = [i.instance_id for i in instances]
    reservations = client.describe_instances(InstanceIds=ids)["Reservations"]
    for raw in (raw for r in reservations for raw in r["Instances"]):
        assert tags_of(raw) == dict(launch.tags)
    volumes = client.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": ids}])[
        "Volumes"
    ]
    assert len(volumes) == 2
    assert all(tags_of(volume) == dict(launch.tags) for volume in volumes)


async def test_launch_asks_for_exactly_count_with_the_intents_token(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    instances = await provider.launch(request(count=3, intent="intent-9"))

    [sent] = ec2.requests("RunInstances")
    assert (sent.params["MinCount"], sent.params["MaxCount"]) == ("3", "3")
    assert sent.params["ClientToken"] == "token-intent-9"
    assert "InstanceMarketOptions.MarketType" not in sent.params
    assert sent.params["InstanceInitiatedShutdownBehavior"] == "terminate"  # a poweroff ends it
    assert len({i.instance_id for i in instances}) == 3
    assert {i.instance_type for i in instances} == {"p5.48xlarge"}
    assert all(i.state is InstanceState.PENDING for i in instances)
    assert all(i.private_ip and i.launched_at.tzinfo is not None for i in instances)


async def test_the_same_token_twice_starts_no_duplicates(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    launch = request(count=2, intent="retried")
    first = await provider.launch(launch)
    again = await provider.launch(launch)  # e.g. after the first answer was lost

    assert [i.instance_id for i in again] == [i.instance_id for i in first]
    listed = await provider.describe(launch.tags)
    assert sorted(i.instance_id for i in listed) == sorted(i.instance_id for i in first)
    assert len(ec2.requests("RunInstances")) == 2


async def test_a_token_reused_for_another_request_is_an_invalid_request(
    provider: AwsProvider,
) -> None:
    await provider.launch(request(count=1, intent="once"))
    with pytest.raises(InvalidRequestError, match="IdempotentParameterMismatch") as caught:
        await provider.launch(request(count=4, intent="once"))
    assert "new intent" in str(caught.value)


async def test_spot_launches_ask_for_the_spot_market(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    instances = await provider.launch(request(count=1, spot=True))

    [sent] = ec2.requests("RunInstances")
    assert sent.params["InstanceMarketOptions.MarketType"] == "spot"
    resource_types = {v for k, v in sent.params.items() if k.endswith(".ResourceType")}
    assert resource_types == {"instance", "volume", "spot-instances-request"}
    assert [i.spot for i in instances] == [True]
    assert [i.spot for i in await provider.describe(request().tags)] == [True]


async def test_zone_subnet_groups_and_user_data_reach_ec2(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    client = raw_ec2(ec2.url)
    vpc = client.describe_vpcs()["Vpcs"][0]["VpcId"]
    subnet = client.create_subnet(
        VpcId=vpc, CidrBlock="172.31.200.0/24", AvailabilityZone="us-east-1c"
    )["Subnet"]["SubnetId"]
    group = client.create_security_group(GroupName="gpu", Description="gpu", VpcId=vpc)["GroupId"]

    [instance] = await provider.launch(
        request(
            count=1,
            zone="us-east-1c",
            subnet_id=subnet,
            security_group_ids=[group],
            user_data="#!/bin/sh\necho hi\n",
        )
    )

    [sent] = ec2.requests("RunInstances")
    assert sent.params["Placement.AvailabilityZone"] == "us-east-1c"
    assert sent.params["SubnetId"] == subnet
    assert sent.params["SecurityGroupId.1"] == group
    assert sent.params["UserData"] == "IyEvYmluL3NoCmVjaG8gaGkK"  # base64 of the script
    assert instance.zone == "us-east-1c"


async def test_a_request_for_another_region_is_refused_before_any_call(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    with pytest.raises(InvalidRequestError, match="eu-west-1"):
        await provider.launch(request(region="eu-west-1"))
    assert ec2.requests() == []


async def test_the_environment_keeps_even_a_default_client_on_loopback(
    ec2: Ec2FaultProxy,
) -> None:
    # No endpoint, no credentials: the default chain. The session's environment must still
    # send it to the proxy, never to amazonaws.com.
    bare = AwsProvider("us-east-1")
    assert await bare.describe(ownership_tags("lab", "h100", "nothing")) == []
    assert [seen.action for seen in ec2.requests()] == ["DescribeInstances"]


def test_credentials_keep_their_secrets_out_of_repr() -> None:
    assert "testing" in repr(DUMMY)  # the key id is not secret
    assert repr(DUMMY).count("testing") == 1
