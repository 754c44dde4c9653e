"""Describe by ownership tags and idempotent terminate, with the pending phase and spot
reclaims that the fault proxy adds to moto."""

from __future__ import annotations

import asyncio

import pytest

from tests.console.providers.helpers import IMAGE, raw_ec2, request
from tests.fakes.ec2_faults import Ec2FaultProxy
from tidectl.console.providers.aws import AwsProvider
from tidectl.console.providers.base import (
    CLUSTER_TAG,
    POOL_TAG,
    InstanceState,
    InvalidRequestError,
    ownership_tags,
)


async def test_describe_returns_only_instances_with_all_the_tags(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    ours_h100 = await provider.launch(request(pool="h100", intent="a", count=2))
    ours_a100 = await provider.launch(request(pool="a100", intent="b", count=1))
    await provider.launch(request(cluster="other-lab", pool="h100", intent="c", count=1))
    raw_ec2(ec2.url).run_instances(  # someone else's instance, untagged
        ImageId=IMAGE, InstanceType="p5.48xlarge", MinCount=1, MaxCount=1
    )

    ours = await provider.describe({CLUSTER_TAG: "lab"})
    assert {i.instance_id for i in ours} == {i.instance_id for i in ours_h100 + ours_a100}
    h100 = await provider.describe({CLUSTER_TAG: "lab", POOL_TAG: "h100"})
    assert {i.instance_id for i in h100} == {i.instance_id for i in ours_h100}
    assert all(i.tags[POOL_TAG] == "h100" for i in h100)
    assert await provider.describe(ownership_tags("lab", "h100", "nope")) == []


async def test_describe_without_tags_is_refused(provider: AwsProvider, ec2: Ec2FaultProxy) -> None:
    with pytest.raises(InvalidRequestError, match="at least one ownership tag"):
        await provider.describe({})
    assert ec2.requests() == []


async def test_terminate_is_idempotent(provider: AwsProvider, ec2: Ec2FaultProxy) -> None:
    launch = request(count=2)
    ids = [i.instance_id for i in await provider.launch(launch)]

    await provider.terminate(ids)
    await provider.terminate(ids)  # already terminated: fine
    await provider.terminate([])  # nothing to do: no call

    assert len(ec2.requests("TerminateInstances")) == 2
    states = {i.instance_id: i.state for i in await provider.describe(launch.tags)}
    assert states == dict.fromkeys(ids, InstanceState.TERMINATED)


async def test_terminate_skips_ids_ec2_no_longer_knows(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    launch = request(count=2)
    ids = [i.instance_id for i in await provider.launch(launch)]

    await provider.terminate(["i-0123456789abcdef0", ids[0], "i-0fedcba987654321f", ids[1]])

    terminate_calls = ec2.requests("TerminateInstances")
    assert len(terminate_calls) == 2  # refused for the unknown ids, then again without them
    assert {i.state for i in await provider.describe(launch.tags)} == {InstanceState.TERMINATED}


async def test_an_id_that_cannot_be_told_apart_is_an_invalid_request(
    provider: AwsProvider,
) -> None:
    # EC2 says Malformed, moto says NotFound: either way no id in the answer matches, so the
    # provider cannot drop it and retry, and says so.
    with pytest.raises(InvalidRequestError, match="not-an-id") as caught:
        await provider.terminate(["not-an-id"])
    assert "check the instance ids" in str(caught.value)


async def test_instances_stay_pending_for_the_injected_boot_delay(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    ec2.pending_for(0.6)
    launch = request(count=2)
    await provider.launch(launch)

    assert {i.state for i in await provider.describe(launch.tags)} == {InstanceState.PENDING}
    await asyncio.sleep(0.7)
    assert {i.state for i in await provider.describe(launch.tags)} == {InstanceState.RUNNING}


async def test_a_spot_interruption_shows_in_describe(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    launch = request(count=2, spot=True)
    reclaimed, kept = await provider.launch(launch)

    ec2.interrupt(reclaimed.instance_id)

    found = {i.instance_id: i for i in await provider.describe(launch.tags)}
    assert found[reclaimed.instance_id].interruption
    assert found[reclaimed.instance_id].state is InstanceState.TERMINATED
    assert not found[kept.instance_id].interruption
    assert found[kept.instance_id].state is InstanceState.RUNNING
