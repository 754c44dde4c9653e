"""Fixtures of the provider tests: the local EC2 of ``tests/fakes/aws_env.py``.

Every test of this package runs with the environment pinned to loopback (autouse below), so
even a test that builds a client without an endpoint cannot reach AWS.
"""

from __future__ import annotations

import pytest

from tests.fakes.aws_env import (  # noqa: F401 (fixtures: pytest finds them here by name)
    aws_on_loopback,
    ec2,
    ec2_proxy,
    moto_server,
    provider,
    shared_provider,
)


@pytest.fixture(scope="package", autouse=True)
def _aws_stays_on_loopback(request: pytest.FixtureRequest) -> None:
    """Every test of the package, not only those that ask for ``ec2``."""
    request.getfixturevalue("aws_on_loopback")
