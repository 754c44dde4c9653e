"""The node-side watchdog on the sim cloud, started by the real engine: instances boot into sim
nodes on 127.0.0.1, the Bootstrapper links them, the real collector deploys and streams the
agent over real SSH (touching the lease), and the engine starts each node's watchdog.

"The control plane killed" is the collector stopped: its SSH sessions close as a dead
process's would, while the cloud (the provider) lives on, as a real cloud does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agents.sim_seeds import steady_seed
from tidectl.console.collector import Collector
from tidectl.console.config.model import (
    AgentSettings,
    ClusterConfig,
    PoolPolicy,
    PoolSpec,
    SshSettings,
)
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.bootstrap import Bootstrapper
from tidectl.console.lifecycle.engine import Engine
from tidectl.console.lifecycle.states import State
from tidectl.console.lifecycle.store import Store
from tidectl.console.providers.base import CLUSTER_TAG, InstanceState
from tidectl.console.providers.sim import SimProvider
from tidectl.console.sim.files import SimLayout
from tidectl.console.thresholds import HealthThresholds
from tidectl.console.transport.deploy import AgentPackage, lease_path

PACKAGE = AgentPackage.build()
CLUSTER = "c1"
LEASE_S = 1.0  # the watchdog checks every 0.25 s and wants 0.5 s of idle readings
AGENT = AgentSettings(interval_s=0.1)
POOL = PoolSpec(
    name="gpu",
    provider="sim",
    region="sim-local",
    site="cloud",
    instance_types=("sim.gpu8",),
    zones=(),
    gpus_per_node=8,
    max_nodes=2,
    price_per_hour=None,
    boot_delay_s=0.0,
    policy=PoolPolicy(watchdog_lease_s=LEASE_S),
)


@dataclass
class Rig:
    store: Store
    cloud: SimProvider
    collector: Collector
    engine: Engine

    async def active_node(self) -> tuple[str, str]:
        """One node burst and reconciled to active (its watchdog started): (node, instance)."""
        result = await self.engine.burst(
            POOL.name, count=1, actor="ana", frontend="cli", request_id="r1"
        )
        [name] = result.nodes
        async with asyncio.timeout(10):
            while True:
                await self.engine.reconcile_once()
                record = self.store.node(name)
                assert record is not None
                if record.state is State.ACTIVE and self.log(name).exists():
                    assert record.instance_id is not None
                    return name, record.instance_id
                await asyncio.sleep(0.05)

    def log(self, node: str) -> Path:
        """The node's watchdog log, in its sim folder (the lease file's sibling)."""
        [instance] = [i for i in self.store.nodes() if i.name == node]
        assert instance.instance_id is not None
        root = SimLayout(self.cloud.root / instance.instance_id).node_root(f"{POOL.name}-0001")
        return root / f"{lease_path(AGENT)}.watchdog.log"

    async def state(self, instance_id: str) -> InstanceState:
        [instance] = [
            i
            for i in await self.cloud.describe({CLUSTER_TAG: CLUSTER})
            if i.instance_id == instance_id
        ]
        return instance.state


MakeRig = Callable[[bool], Awaitable[Rig]]


@pytest.fixture
async def make_rig(tmp_path: Path) -> AsyncIterator[MakeRig]:
    """``await make_rig(busy)``: the engine over a sim cloud whose first node stays busy (in
    a training job) or idle for the whole test."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.touch()
    config = ClusterConfig(
        name=CLUSTER,
        path=tmp_path / "cluster.toml",
        ssh=SshSettings(
            user="tidectl",
            identity_file=None,
            known_hosts=known_hosts,
            connect_timeout_s=5.0,
            login_timeout_s=5.0,
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        ),
        agent=AGENT,
        sites=(),
        nodes=(),
        health=HealthThresholds(),
    )
    closers: list[Callable[[], Awaitable[None]]] = []
    stores: list[Store] = []

    async def make(busy: bool) -> Rig:
        store = Store.open(tmp_path / "store.sqlite3")
        stores.append(store)
        # Terminated instances keep their folder a second, so the log can be read.
        cloud = SimProvider(
            tmp_path / "cloud", seed=steady_seed(busy), shutdown_delay_s=1.0, boot_delay_s=0
        )
        closers.append(cloud.aclose)
        collector = Collector(config, Fleet((), config.health, coalesce_s=0), package=PACKAGE)
        await collector.start()
        closers.append(collector.stop)
        linker = Bootstrapper(collector, {POOL.name: POOL}, {POOL.name: cloud})
        engine = Engine(
            store,
            {POOL.name: cloud},
            None,
            {POOL.name: POOL},
            CLUSTER,
            health=linker.health,
            linker=linker,
        )
        return Rig(store, cloud, collector, engine)

    yield make
    for close in reversed(closers):
        await close()
    for store in stores:
        store.close()


async def _until(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Poll ``check`` (the sim cloud has no event for it) until it holds; the seconds taken."""
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_the_engine_starts_each_nodes_watchdog_once_and_a_second_start_is_a_no_op(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(False)
    node, _instance = await rig.active_node()
    for _ in range(3):
        await rig.engine.reconcile_once()
    assert rig.log(node).read_text().count(" watching .cache/tidectl/lease") == 1
    linker = rig.engine._linker
    assert isinstance(linker, Bootstrapper)
    command = linker.watchdog_command(node, POOL)
    assert command is not None and "--poweroff 'sudo systemctl poweroff'" in command
    again = await rig.collector.run_on(node, command, 10)
    assert again.exit_status == 0, again
    assert "already watching /.cache/tidectl/lease" in again.stdout
    assert rig.log(node).read_text().count(" watching .cache/tidectl/lease") == 1


async def test_a_held_lease_keeps_an_idle_node_running(make_rig: MakeRig) -> None:
    rig = await make_rig(False)
    node, instance = await rig.active_node()
    await asyncio.sleep(3 * LEASE_S)  # the agent streams, touching the lease all along
    assert await rig.state(instance) is InstanceState.RUNNING
    assert "no control plane holds it" not in rig.log(node).read_text()


async def test_with_the_control_plane_gone_an_idle_node_powers_off_after_the_lease(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(False)
    node, instance = await rig.active_node()
    log = rig.log(node)
    await rig.collector.stop()  # the control plane dies: its SSH sessions close
    took = await _until(
        lambda: _is(rig, instance, InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED), 10
    )
    assert took >= LEASE_S - AGENT.interval_s, "powered off before the lease ran out"
    text = log.read_text()
    assert "no control plane holds it" in text
    assert "powering off: the lease is" in text
    assert "the poweroff command succeeded" in text
    assert "not powering off" not in text
    await _until(lambda: _is(rig, instance, InstanceState.TERMINATED), 5)


async def test_with_the_control_plane_gone_a_busy_node_is_never_powered_off(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(True)
    node, instance = await rig.active_node()
    log = rig.log(node)
    await rig.collector.stop()

    async def looked_and_saw_it_busy() -> bool:
        return "not powering off: GPU 0 is at" in log.read_text()

    await _until(looked_and_saw_it_busy, 10)
    await asyncio.sleep(3 * LEASE_S)  # several leases more, checked every 0.25 s
    assert await rig.state(instance) is InstanceState.RUNNING
    assert "powering off: the lease" not in log.read_text()


async def _is(rig: Rig, instance: str, *states: InstanceState) -> bool:
    return await rig.state(instance) in states
