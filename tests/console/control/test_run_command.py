"""``ControlPlane.run_command``: a command on nodes over the collector's own connections, as an
action — the operator role, the decision in the audit log before any node is reached, the
outcome after — in the plane and through the service, where the client's origin (a playbook's
path and hash) is kept in the audit records of what it asks."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tidectl.console.audit import read
from tidectl.console.control.assemble import assemble
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.demo import DemoCluster
from tidectl.console.model import LinkState
from tidectl.console.server.client import RemotePlane
from tidectl.console.server.service import Service

ME = Caller.local(Frontend.CLI)
ORIGIN = "playbook:/srv/books/smoke.yaml sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def demo() -> Iterator[DemoCluster]:
    with DemoCluster(2, seed=3) as cluster:
        yield cluster


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short folder: a Unix socket's path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="trc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def plane(demo: DemoCluster, folder: Path) -> AsyncIterator[ControlPlane]:
    pools = tuple(dataclasses.replace(p, boot_delay_s=0.0) for p in demo.config.pools)
    config = dataclasses.replace(demo.config, pools=pools)
    built = await assemble(config, store=folder / "store.sqlite3", in_process_sim=True)
    async with built:
        assert built.fleet is not None
        deadline = time.monotonic() + 20
        while any(n.link is not LinkState.STREAMING for n in built.fleet.nodes.values()):
            assert time.monotonic() < deadline, "the demo's nodes never streamed"
            await asyncio.sleep(0.1)
        yield built


async def test_a_command_runs_over_the_agents_connections_and_is_audited(
    plane: ControlPlane,
) -> None:
    results = await plane.run_command(
        Caller(ME.user, Frontend.PLAYBOOK, ORIGIN), "sim[0001-0002]", "nvidia-smi -L"
    )
    assert [(r.node, r.exit_status) for r in results] == [("sim0001", 0), ("sim0002", 0)]
    assert all(r.stdout.startswith("GPU 0: NVIDIA H100") for r in results)
    failed = await plane.run_command(ME, ["sim0001"], "false", timeout_s=5)
    assert [(r.node, r.exit_status) for r in failed] == [("sim0001", 1)]

    assert plane.audit is not None
    runs = [r for r in read(plane.audit.path) if r.action == "run"]
    assert [(r.targets, r.decision, r.outcome) for r in runs] == [
        (("sim[0001-0002]",), "allowed", "started"),
        (("sim[0001-0002]",), "allowed", "done: exit 0, 2 of 2 node(s) succeeded"),
        (("sim0001",), "allowed", "started"),
        (("sim0001",), "allowed", "done: exit 1, 0 of 1 node(s) succeeded"),
    ]
    assert runs[0].params == {"command": "nvidia-smi -L", "timeout_s": 30.0, "origin": ORIGIN}
    assert runs[1].params == {"origin": ORIGIN}  # the outcome names its origin too
    assert "origin" not in runs[2].params


async def test_a_run_is_refused_without_a_role_for_an_unwatched_node_and_without_agents(
    plane: ControlPlane, demo: DemoCluster, folder: Path
) -> None:
    with pytest.raises(Refused, match="nobody"):
        await plane.run_command(Caller("nobody", Frontend.CLI), "sim0001", "true")
    with pytest.raises(Refused, match="not watched by this control plane: gpu9"):
        await plane.run_command(ME, ["sim0001", "gpu9"], "true")
    blind = await assemble(
        dataclasses.replace(demo.config, pools=()),
        store=folder / "other.sqlite3",
        collect=False,
        in_process_sim=True,
    )
    try:
        with pytest.raises(Refused, match="this control plane watches no agents"):
            await blind.run_command(ME, "sim0001", "true")
    finally:
        await blind.aclose()


async def test_through_the_service_a_run_and_a_burst_carry_the_clients_origin(
    plane: ControlPlane, folder: Path
) -> None:
    service = Service(plane, folder / "s.sock")
    await service.start()
    try:
        async with RemotePlane(folder / "s.sock", Frontend.PLAYBOOK, origin=ORIGIN) as remote:
            results = await remote.run_command(ME, ["sim0002"], "nvidia-smi -L", timeout_s=10)
            assert [(r.node, r.exit_status) for r in results] == [("sim0002", 0)]
            burst = await remote.burst(ME, "burst", ensure=0)
            assert burst.launched == 0
    finally:
        await service.aclose()
    assert plane.audit is not None
    asked = [r for r in read(plane.audit.path) if r.rule != "outcome"]
    assert [(r.action, r.frontend, r.params.get("origin")) for r in asked] == [
        ("run", "playbook", ORIGIN),
        ("burst", "playbook", ORIGIN),
    ]
