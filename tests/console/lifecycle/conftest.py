"""Fixtures of the lifecycle tests: see ``world.py``; the local EC2 of ``tests/fakes/aws_env.py``
(started only by the tests that ask for ``ec2``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.console.lifecycle.world import Clock, World
from tests.fakes.aws_env import (  # noqa: F401 (fixtures: the kill -9 tests' local EC2)
    aws_on_loopback,
    ec2,
    ec2_proxy,
    moto_server,
)
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.sim import SimProvider
from tidectl.console.scheduler.sim import SimScheduler


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def world(tmp_path: Path, clock: Clock) -> AsyncIterator[World]:
    with Store.open(tmp_path / "store.sqlite3") as store:
        async with SimProvider(tmp_path / "cloud", boot_delay_s=0) as cloud:
            yield World(store, cloud, SimScheduler(), clock)
