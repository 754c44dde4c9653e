"""EC2's failures, injected by the fault proxy and parsed by real botocore, come out as the
provider errors whose class tells the engine what to do; launches are never retried by
botocore, other calls are; nothing blocks the event loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time

import pytest

from tests.console.providers.helpers import DUMMY, REGION, request
from tests.fakes.ec2_faults import Ec2FaultProxy
from tidectl.console.providers.aws import AwsProvider
from tidectl.console.providers.base import (
    AuthError,
    CapacityError,
    InvalidRequestError,
    ProviderError,
    QuotaError,
    ThrottledError,
    UnavailableError,
)


@pytest.mark.parametrize(
    ("fault", "error", "advice"),
    [
        (("InsufficientInstanceCapacity", 500), CapacityError, "try another zone or instance type"),
        (("InsufficientHostCapacity", 500), CapacityError, "try another zone or instance type"),
        (("Unsupported", 400), CapacityError, "try another zone or instance type"),
        (("SpotMaxPriceTooLow", 400), CapacityError, "try another zone or instance type"),
        (("VcpuLimitExceeded", 400), QuotaError, "Service Quotas"),
        (("InstanceLimitExceeded", 400), QuotaError, "Service Quotas"),
        (("AuthFailure", 401), AuthError, "check the credentials"),
        (("UnauthorizedOperation", 403), AuthError, "ec2:RunInstances"),
        (("RequestLimitExceeded", 503), ThrottledError, "back off"),
        (("InvalidAMIID.NotFound", 400), InvalidRequestError, "fix the pool's configuration"),
        (("InvalidSubnetID.NotFound", 400), InvalidRequestError, "fix the pool's configuration"),
        (("InternalError", 500), UnavailableError, "retry with the same token"),
    ],
)
async def test_launch_errors_are_typed_and_never_retried_by_botocore(
    provider: AwsProvider,
    ec2: Ec2FaultProxy,
    fault: tuple[str, int],
    error: type[ProviderError],
    advice: str,
) -> None:
    code, status = fault
    ec2.fail("RunInstances", code, status=status)

    with pytest.raises(error) as caught:
        await provider.launch(request())

    assert type(caught.value) is error
    assert caught.value.code == code
    assert code in str(caught.value)
    assert advice in str(caught.value)
    assert len(ec2.requests("RunInstances")) == 1  # one attempt: the engine decides, not boto


async def test_capacity_errors_name_the_type_and_zone_that_failed(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    ec2.capacity("p5.48xlarge", zone="us-east-1a")

    with pytest.raises(CapacityError) as caught:
        await provider.launch(request(zone="us-east-1a", intent="a"))
    assert (caught.value.instance_type, caught.value.zone) == ("p5.48xlarge", "us-east-1a")
    assert "p5.48xlarge in us-east-1a" in str(caught.value)

    # The same type elsewhere, or another type there, still launches: that is the failover.
    assert await provider.launch(request(zone="us-east-1b", intent="b", count=1))
    assert await provider.launch(
        request(zone="us-east-1a", intent="c", count=1, instance_type="p4d.24xlarge")
    )
    assert len(ec2.requests("RunInstances")) == 3


async def test_throttling_is_retried_on_calls_other_than_launch(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    launch = request(count=1)
    [instance] = await provider.launch(launch)
    ec2.throttle("DescribeInstances", times=1)
    ec2.throttle("TerminateInstances", times=1)

    assert [i.instance_id for i in await provider.describe(launch.tags)] == [instance.instance_id]
    await provider.terminate([instance.instance_id])

    assert len(ec2.requests("DescribeInstances")) == 2
    assert len(ec2.requests("TerminateInstances")) == 2


async def test_throttling_that_outlasts_the_retries_is_a_throttled_error(
    ec2: Ec2FaultProxy,
) -> None:
    provider = AwsProvider(REGION, endpoint_url=ec2.url, credentials=DUMMY, max_attempts=2)
    ec2.throttle("DescribeInstances", times=None)

    with pytest.raises(ThrottledError, match="RequestLimitExceeded"):
        await provider.describe(request().tags)
    assert len(ec2.requests("DescribeInstances")) == 2


async def test_an_unreachable_endpoint_leaves_the_launch_outcome_open() -> None:
    # A port nobody listens on (bound, never listening), on loopback.
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        provider = AwsProvider(REGION, endpoint_url=url, credentials=DUMMY, max_attempts=1)
        with pytest.raises(UnavailableError) as caught:
            await provider.launch(request())
    assert "unknown whether instances were started" in str(caught.value)
    assert "same token" in str(caught.value)


async def test_no_credentials_at_all_is_an_auth_error(
    ec2: Ec2FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default chain with nothing to find (no keys, config files are /dev/null, no instance
    # metadata): botocore refuses to sign, and nothing is sent.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    provider = AwsProvider(REGION, endpoint_url=ec2.url)

    with pytest.raises(AuthError, match="no usable AWS credentials") as caught:
        await provider.describe(request().tags)
    assert "NoCredentialsError" in str(caught.value)
    assert ec2.requests() == []


async def test_a_slow_ec2_never_blocks_the_event_loop(
    provider: AwsProvider, ec2: Ec2FaultProxy
) -> None:
    await provider.describe(request().tags)  # clients made, connection open
    ec2.slow("DescribeInstances", 0.5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    await provider.describe(request().tags)
    elapsed = time.monotonic() - started
    ticking.cancel()

    assert elapsed >= 0.5
    assert ticks >= 20  # a blocked loop would tick once, after the call


async def test_a_boto3_lost_after_setup_is_a_sentence(
    ec2: Ec2FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = AwsProvider(REGION, endpoint_url=ec2.url, credentials=DUMMY)  # boto3 seen
    for name in ("boto3", "boto3.session", "botocore", "botocore.config"):
        monkeypatch.setitem(sys.modules, name, None)  # `import boto3` now raises ImportError

    with pytest.raises(ProviderError, match=r"install it with pip install 'tidectl\[aws\]'"):
        await provider.describe(request().tags)
    assert ec2.requests() == []


def test_without_boto3_the_module_imports_and_the_provider_says_what_to_install() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["boto3"] = None  # as if not installed
        sys.modules["botocore"] = None
        from tidectl.console.providers import aws
        from tidectl.console.providers.base import ProviderError
        try:
            aws.AwsProvider("us-east-1")
        except ProviderError as error:
            print(type(error).__name__, error)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.startswith("ProviderError the aws provider needs boto3")
    assert "tidectl[aws]" in out.stdout


def test_importing_the_provider_does_not_load_boto3() -> None:
    script = (
        "import sys\nfrom tidectl.console.providers import aws\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
