"""A local EC2 for tests: a moto server process behind the fault proxy, and an environment
that keeps every AWS client on loopback.

Nothing here may reach AWS. Clients are always pointed at the proxy on 127.0.0.1 with dummy
credentials, and while :func:`aws_on_loopback` is in force the environment is set so that
even a client built without an endpoint (or a stray default chain lookup) stays on loopback: a
catch-all AWS_ENDPOINT_URL, dummy keys, no config files, no instance metadata service, no
HTTP proxy. A child process started meanwhile inherits all of it.

The fixtures are plain definitions: a conftest imports the ones its package needs (and may
make the environment autouse there, as the provider tests do).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.fakes.ec2_faults import Ec2FaultProxy, fault_proxy
from tests.fakes.moto_server import MotoServer, moto_binary
from tidectl.console.providers.aws import AwsCredentials, AwsProvider

REGION = "us-east-1"
DUMMY = AwsCredentials("testing", "testing")

#: Variables that could send a client elsewhere or to other credentials: removed.
_REMOVED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_RETRY_MODE",
    "AWS_MAX_ATTEMPTS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
)


def pin_to_loopback(patch: pytest.MonkeyPatch, endpoint_url: str) -> None:
    """Set the environment so every AWS client goes to ``endpoint_url`` with dummy keys."""
    for name in _REMOVED:
        patch.delenv(name, raising=False)
    patch.setenv("AWS_ENDPOINT_URL", endpoint_url)
    patch.setenv("AWS_ACCESS_KEY_ID", DUMMY.access_key_id)
    patch.setenv("AWS_SECRET_ACCESS_KEY", DUMMY.secret_access_key)
    patch.setenv("AWS_DEFAULT_REGION", REGION)
    patch.setenv("AWS_CONFIG_FILE", os.devnull)
    patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    patch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="package")
def moto_server() -> Iterator[MotoServer]:
    binary = moto_binary()
    if binary is None:
        pytest.skip("moto_server is not installed next to Python: pip install -e '.[test]'")
    server = MotoServer(binary).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="package")
def ec2_proxy(moto_server: MotoServer) -> Iterator[Ec2FaultProxy]:
    with fault_proxy(moto_server.url) as proxy:
        yield proxy


@pytest.fixture(scope="package")
def aws_on_loopback(ec2_proxy: Ec2FaultProxy) -> Iterator[None]:
    """The environment of :func:`pin_to_loopback`, at the proxy, for the package."""
    with pytest.MonkeyPatch.context() as patch:
        pin_to_loopback(patch, ec2_proxy.url)
        yield


@pytest.fixture
def ec2(moto_server: MotoServer, ec2_proxy: Ec2FaultProxy, aws_on_loopback: None) -> Ec2FaultProxy:
    """The fault proxy over a freshly reset moto: no instances, no faults, no requests."""
    moto_server.reset()
    ec2_proxy.reset()
    return ec2_proxy


@pytest.fixture(scope="package")
def shared_provider(ec2_proxy: Ec2FaultProxy) -> AwsProvider:
    # One for the package: a provider's first call loads EC2's service model (about 0.4 s),
    # and it holds no state of its own between calls.
    return AwsProvider(REGION, endpoint_url=ec2_proxy.url, credentials=DUMMY)


@pytest.fixture
def provider(ec2: Ec2FaultProxy, shared_provider: AwsProvider) -> AwsProvider:
    """The aws provider at the proxy, over a freshly reset EC2."""
    return shared_provider
