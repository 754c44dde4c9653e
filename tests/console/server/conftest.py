"""The service's tests run a real ControlPlane in the lifecycle tests' world (``service``: one
listening on a socket in a short ``folder``), and a real ``tidectl serve`` against the local
EC2 of ``tests/fakes/aws_env.py``."""

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.console.lifecycle.conftest import clock, world
from tests.console.lifecycle.world import POOL, World
from tests.fakes.aws_env import aws_on_loopback, ec2, ec2_proxy, moto_server
from tidectl.console.config.loader import parse_config
from tidectl.console.control.plane import ControlPlane
from tidectl.console.server.service import Service

__all__ = ["aws_on_loopback", "clock", "ec2", "ec2_proxy", "moto_server", "world"]  # fixtures


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short folder: a Unix socket's path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="tsv-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def service(world: World, folder: Path) -> AsyncIterator[Service]:
    (folder / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu[1-2]"\n'
    )
    config = replace(parse_config(text, folder / "cluster.toml"), pools=(POOL,))
    plane = ControlPlane(
        config, world.store, world.engine(), scheduler=world.scheduler, interval_s=0.05
    )
    await plane.start()
    running = Service(plane, folder / "s.sock")
    await running.start()
    yield running
    await running.aclose()
    await plane.aclose()
