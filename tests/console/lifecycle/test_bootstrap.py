"""Bootstrapping cloud nodes against the real sim cloud: an instance boots into a sim node on
127.0.0.1, the Bootstrapper links it with the host key the provider handed over, the real
collector deploys and streams the agent, and the admission gate reads the fleet.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import asyncssh
import pytest

from tidectl.console.collector import Collector
from tidectl.console.config.model import (
    AgentSettings,
    ClusterConfig,
    NodeSpec,
    PoolSpec,
    SshSettings,
)
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.admission import admit
from tidectl.console.lifecycle.bootstrap import Bootstrapper
from tidectl.console.model import LinkState
from tidectl.console.providers.aws import AwsProvider
from tidectl.console.providers.base import (
    Instance,
    LaunchRequest,
    Provider,
    ownership_tags,
)
from tidectl.console.providers.sim import SimEndpoint, SimProvider
from tidectl.console.sim.files import SimLayout
from tidectl.console.sim.injector import SimFaults
from tidectl.console.thresholds import HealthThresholds
from tidectl.console.transport.deploy import AgentPackage

POOL = PoolSpec(
    name="gpu",
    provider="sim",
    region="sim-local",
    site="cloud",
    instance_types=("sim.gpu8",),
    zones=(),
    gpus_per_node=8,
    max_nodes=4,
    price_per_hour=None,
    boot_delay_s=0.0,
)
PACKAGE = AgentPackage.build()
NODE = "gpu-abcd1234-1"  # the engine's name for the node, not the sim's hostname


@dataclass
class World:
    cloud: SimProvider
    fleet: Fleet
    collector: Collector

    def bootstrapper(self, pool: PoolSpec = POOL, provider: Provider | None = None) -> Bootstrapper:
        return Bootstrapper(
            self.collector,
            {pool.name: pool},
            {pool.name: provider or self.cloud},
            base_labels={"kind": "cloud"},
        )

    async def until(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait on the fleet's changes until ``check()`` holds."""
        changed = asyncio.Event()
        unsubscribe = self.fleet.subscribe(lambda _names: changed.set())
        try:
            async with asyncio.timeout(timeout):
                while not check():
                    changed.clear()
                    await changed.wait()
        finally:
            unsubscribe()

    async def running(self) -> SimEndpoint:
        """One instance, launched and running (the sim has no event for it: polled)."""
        request = LaunchRequest(
            pool=POOL.name,
            count=1,
            instance_type="sim.gpu8",
            region="sim-local",
            image_id="sim",
            token="token-1",
            tags=ownership_tags("c1", POOL.name, "intent-1"),
        )
        [instance] = await self.cloud.launch(request)
        deadline = time.monotonic() + 10
        while (endpoint := self.cloud.endpoint(instance.instance_id)) is None:
            assert time.monotonic() < deadline, "the sim instance did not boot in time"
            await asyncio.sleep(0.02)
        return endpoint


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.touch()  # the cluster's file lists no cloud node
    config = ClusterConfig(
        name="c1",
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
        agent=AgentSettings(interval_s=0.1),
        sites=(),
        nodes=(),
        health=HealthThresholds(),
    )
    fleet = Fleet((), config.health, coalesce_s=0)
    async with (
        SimProvider(tmp_path / "cloud", boot_delay_s=0) as cloud,
        Collector(config, fleet, package=PACKAGE) as collector,
    ):
        yield World(cloud, fleet, collector)


class HandsOverAStrangersKey:
    """The sim cloud, except that the host key it hands over is another machine's."""

    def __init__(self, cloud: SimProvider) -> None:
        self.cloud = cloud
        self.stranger = asyncssh.generate_private_key("ssh-ed25519")

    def endpoint(self, instance_id: str) -> SimEndpoint | None:
        endpoint = self.cloud.endpoint(instance_id)
        if endpoint is None:
            return None
        key = self.stranger.export_public_key().decode().strip()
        line = f"{endpoint.node},[{endpoint.address}]:{endpoint.port} {key}\n"
        return replace(endpoint, known_hosts_line=line)

    async def launch(self, request: LaunchRequest) -> list[Instance]:
        return await self.cloud.launch(request)

    async def describe(self, tags: Mapping[str, str]) -> list[Instance]:
        return await self.cloud.describe(tags)

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        await self.cloud.terminate(instance_ids)

    async def price_per_hour(self, instance_type: str, *, spot: bool) -> float | None:
        return await self.cloud.price_per_hour(instance_type, spot=spot)


async def test_a_linked_instance_streams_and_passes_the_gate(world: World) -> None:
    endpoint = await world.running()
    boot = world.bootstrapper()
    assert boot.health(NODE) is None  # not linked: not heard from
    assert boot.link(NODE, "gpu", endpoint.instance_id) is None
    assert boot.linked(NODE)
    assert boot.link(NODE, "gpu", endpoint.instance_id) is None  # again: already linked

    spec = world.fleet.nodes[NODE].spec
    assert (spec.address, spec.port, spec.user, spec.site) == (
        endpoint.address,
        endpoint.port,
        endpoint.user,
        "cloud",
    )
    assert spec.labels == {"kind": "cloud", "pool": "gpu", "instance": endpoint.instance_id}
    assert spec.known_hosts == endpoint.known_hosts_line
    assert spec.identity_file == endpoint.client_key

    await world.until(lambda: boot.health(NODE) is not None)
    verdict = boot.admission(NODE)
    assert verdict.verdict is True, verdict.why
    assert verdict.why == f"node {NODE} streams, sees its 8 GPUs and has no critical finding"
    # The same node against a pool that promises 4 GPUs is refused, with the counts.
    four = admit(world.fleet, NODE, 4)
    assert four.verdict is False
    assert four.why.startswith(f"node {NODE} has the wrong GPU count: its inventory lists 8")
    assert "the pool promises 4" in four.why

    # Another instance under the same name is not silently swapped in.
    refused = boot.link(NODE, "gpu", "i-another")
    assert refused is not None and "already linked to instance" in refused


async def test_a_critical_finding_keeps_the_node_out(world: World) -> None:
    endpoint = await world.running()
    boot = world.bootstrapper()
    assert boot.link(NODE, "gpu", endpoint.instance_id) is None
    await world.until(lambda: boot.health(NODE) is True)
    SimFaults(endpoint.folder).inject(endpoint.node, "xid gpu=3 code=79")
    await world.until(lambda: boot.health(NODE) is False)
    why = boot.admission(NODE).why
    assert why.startswith(f"node {NODE} has a critical finding and stays out of the scheduler")
    assert re.search(
        r"The worst: GPU 3 reported XID 79 \(GPU has fallen off the bus\) \d+ s ago\.$", why
    )


async def test_a_wrong_handed_over_key_is_never_trusted(world: World) -> None:
    endpoint = await world.running()
    boot = world.bootstrapper(provider=HandsOverAStrangersKey(world.cloud))
    assert boot.link(NODE, "gpu", endpoint.instance_id) is None
    node = world.fleet.nodes[NODE]
    await world.until(lambda: node.link is LinkState.HOST_KEY_MISMATCH)
    assert node.link_error is not None
    assert "does not match the key its provider handed over" in node.link_error
    assert "no command was sent" in node.link_error
    verdict = boot.admission(NODE)
    assert verdict.verdict is None
    assert verdict.why.startswith(f"node {NODE}'s link is host-key-mismatch, not streaming")
    assert verdict.why.endswith(f"The link says: {node.link_error}")
    # Nothing ran: the link never got as far as deploying, and no agent reached the node.
    assert [e.after for e in node.events if e.kind == "link"] == ["host-key-mismatch"]
    node_root = SimLayout(endpoint.folder).node_root(endpoint.node)
    assert not (node_root / ".cache").exists()
    assert node.sample is None and node.hello is None


async def test_unlink_drops_the_node_and_closes_its_connection(world: World) -> None:
    endpoint = await world.running()
    boot = world.bootstrapper()
    assert boot.link(NODE, "gpu", endpoint.instance_id) is None
    await world.until(lambda: world.fleet.nodes[NODE].link is LinkState.STREAMING)
    conn = world.collector.links[NODE].conn
    assert conn is not None and not conn.is_closed()

    await boot.unlink(NODE)
    assert conn.is_closed()
    assert NODE not in world.fleet.nodes and NODE not in world.collector.links
    assert not boot.linked(NODE) and boot.health(NODE) is None
    await boot.unlink(NODE)  # twice: nothing to do
    # Linked again (the engine after a restart), it streams again.
    assert boot.link(NODE, "gpu", endpoint.instance_id) is None
    await world.until(lambda: boot.health(NODE) is True)


async def test_a_provider_that_hands_over_no_key_is_refused(world: World) -> None:
    aws_pool = replace(POOL, name="h100", provider="aws", region="us-east-1")
    # Never called: the refusal comes from what the provider can do, not from EC2.
    aws = AwsProvider("us-east-1", endpoint_url="http://127.0.0.1:9")
    boot = world.bootstrapper(aws_pool, aws)
    refused = boot.link("h100-1", "h100", "i-0123456789abcdef0")
    assert refused is not None
    assert refused.startswith(
        "cloud node h100-1: its provider (aws) does not hand over a host key, and tidectl "
        "never trusts an unverified one"
    )
    assert "Terminate the instance, or wait" in refused
    assert not boot.linked("h100-1") and "h100-1" not in world.fleet.nodes


async def test_what_cannot_be_linked_says_why(world: World) -> None:
    boot = world.bootstrapper()
    no_pool = boot.link(NODE, "tpu", "i-1")
    assert no_pool is not None and "there is no pool named 'tpu' (pools: gpu)" in no_pool
    not_running = boot.link(NODE, "gpu", "i-not-there")
    assert not_running is not None and "instance i-not-there is not running" in not_running
    assert NODE not in world.fleet.nodes

    # A name the console already watches (an on-prem node's) is not taken over.
    endpoint = await world.running()
    onprem = NodeSpec(name=NODE, address="127.0.0.1", port=1, site="lab", user="tidectl")
    world.collector.add_node(onprem)
    taken = boot.link(NODE, "gpu", endpoint.instance_id)
    assert taken is not None and "already watches a node of that name" in taken
    assert not boot.linked(NODE) and world.fleet.nodes[NODE].spec is onprem


async def test_a_command_runs_on_a_linked_node_over_its_connection(world: World) -> None:
    """The pool's join command goes over the node's own SSH connection (the one its agent
    streams on); a failure comes back as a sentence with the status and what it said."""
    endpoint = await world.running()
    boot = world.bootstrapper()
    assert (
        await boot.run(NODE, "true", 10)
        == f"cloud node {NODE} is not linked: nothing can run on it yet"
    )
    assert boot.link(NODE, "gpu", endpoint.instance_id) is None
    await world.until(lambda: boot.health(NODE) is not None)
    assert await boot.run(NODE, f"echo joined {NODE}", 10) is None
    failed = await boot.run(NODE, "false", 10)
    assert failed == f"'false' exited 1 on {NODE}"
    missing = await boot.run(NODE, "slurmd -N x", 10)
    assert missing is not None and "exited 127" in missing and "slurmd: not found" in missing
