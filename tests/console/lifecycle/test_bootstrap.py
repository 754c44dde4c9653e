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

from tests.fakes.aws_env import DUMMY
from tests.fakes.cloud_init import cloud_init_console, fingerprint, public
from tests.fakes.ec2_faults import Ec2FaultProxy
from tidectl.console.collector import Collector
from tidectl.console.config.model import (
    AgentSettings,
    BootstrapSettings,
    ClusterConfig,
    NodeSpec,
    PoolSpec,
    SshSettings,
)
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.admission import admit
from tidectl.console.lifecycle.bootstrap import CONSOLE_POLL_S, Bootstrapper
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
    assert await boot.link(NODE, "gpu", endpoint.instance_id) is None
    assert boot.linked(NODE)
    assert await boot.link(NODE, "gpu", endpoint.instance_id) is None  # again: already linked

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
    refused = await boot.link(NODE, "gpu", "i-another")
    assert refused is not None and "already linked to instance" in refused


async def test_a_critical_finding_keeps_the_node_out(world: World) -> None:
    endpoint = await world.running()
    boot = world.bootstrapper()
    assert await boot.link(NODE, "gpu", endpoint.instance_id) is None
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
    assert await boot.link(NODE, "gpu", endpoint.instance_id) is None
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
    assert await boot.link(NODE, "gpu", endpoint.instance_id) is None
    await world.until(lambda: world.fleet.nodes[NODE].link is LinkState.STREAMING)
    conn = world.collector.links[NODE].conn
    assert conn is not None and not conn.is_closed()

    await boot.unlink(NODE)
    assert conn.is_closed()
    assert NODE not in world.fleet.nodes and NODE not in world.collector.links
    assert not boot.linked(NODE) and boot.health(NODE) is None
    await boot.unlink(NODE)  # twice: nothing to do
    # Linked again (the engine after a restart), it streams again.
    assert await boot.link(NODE, "gpu", endpoint.instance_id) is None
    await world.until(lambda: boot.health(NODE) is True)


class ShowsNothing:
    """A provider that can launch but neither hands over keys nor shows a console."""

    def __init__(self, cloud: SimProvider) -> None:
        self.cloud = cloud

    async def launch(self, request: LaunchRequest) -> list[Instance]:
        return await self.cloud.launch(request)

    async def describe(self, tags: Mapping[str, str]) -> list[Instance]:
        return await self.cloud.describe(tags)

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        await self.cloud.terminate(instance_ids)

    async def price_per_hour(self, instance_type: str, *, spot: bool) -> float | None:
        return None


async def test_a_provider_that_vouches_for_no_key_is_refused(world: World) -> None:
    endpoint = await world.running()
    boot = world.bootstrapper(provider=ShowsNothing(world.cloud))
    refused = await boot.link(NODE, "gpu", endpoint.instance_id)
    assert refused == (
        f"cloud node {NODE}: its provider (sim) neither hands over a host key nor shows the "
        "instance's console, and tidectl never trusts an unverified one; terminate the instance"
    )
    assert not boot.linked(NODE) and NODE not in world.fleet.nodes


# -- AWS: the host keys the instance printed to its console ---------------------------------
#
# EC2 is the local moto server behind the fault proxy, which shows the console a test sets
# and puts the instance on 127.0.0.1; what answers SSH there is a sim node (a real SSH server
# running the real agent), so the key on the console is checked against a real handshake.

AWS_NODE = "h100-abcd1234-1"


@dataclass
class OnAws:
    instance_id: str
    sim: SimEndpoint  # what answers at the instance's address
    pool: PoolSpec
    provider: AwsProvider
    ec2: Ec2FaultProxy

    @property
    def host_key(self) -> asyncssh.SSHKey:
        return asyncssh.import_public_key(self.sim.host_key)

    def reads(self) -> int:
        """GetConsoleOutput calls EC2 has seen for the instance."""
        seen = self.ec2.requests("GetConsoleOutput")
        return sum(1 for s in seen if s.params.get("InstanceId") == self.instance_id)


@pytest.fixture
async def on_aws(world: World, ec2: Ec2FaultProxy) -> OnAws:
    sim = await world.running()
    provider = AwsProvider("us-east-1", endpoint_url=ec2.url, credentials=DUMMY)
    pool = replace(
        POOL,
        name="h100",
        provider="aws",
        region="us-east-1",
        image_id="ami-0123456789abcdef0",
        bootstrap=BootstrapSettings(user=sim.user, ssh_port=sim.port, identity_file=sim.client_key),
    )
    request = LaunchRequest(
        pool="h100",
        count=1,
        instance_type="p5.48xlarge",
        region="us-east-1",
        image_id="ami-0123456789abcdef0",
        token=f"token-{time.monotonic_ns()}",
        tags=ownership_tags("c1", "h100", "intent-1"),
    )
    [instance] = await provider.launch(request)
    ec2.place(instance.instance_id, "127.0.0.1")
    return OnAws(instance.instance_id, sim, pool, provider, ec2)


def aws_bootstrapper(
    world: World, aws: OnAws, clock: Callable[[], float] = time.monotonic
) -> Bootstrapper:
    return Bootstrapper(
        world.collector, {"h100": aws.pool}, {"h100": aws.provider}, ssh_user="x", clock=clock
    )


def nothing_ran(sim: SimEndpoint) -> bool:
    return not (SimLayout(sim.folder).node_root(sim.node) / ".cache").exists()


async def test_an_aws_node_is_trusted_by_the_keys_its_console_printed(
    world: World, on_aws: OnAws
) -> None:
    on_aws.ec2.show_console(on_aws.instance_id, cloud_init_console(on_aws.host_key))
    boot = aws_bootstrapper(world, on_aws)
    assert await boot.link(AWS_NODE, "h100", on_aws.instance_id) is None
    spec = world.fleet.nodes[AWS_NODE].spec
    assert (spec.address, spec.port, spec.user) == ("127.0.0.1", on_aws.sim.port, on_aws.sim.user)
    assert spec.known_hosts == f"[127.0.0.1]:{on_aws.sim.port} {public(on_aws.host_key)}\n"
    assert spec.identity_file == on_aws.sim.client_key
    await world.until(lambda: boot.health(AWS_NODE) is True)


async def test_an_aws_node_printing_only_fingerprints_is_checked_by_its_handshake(
    world: World, on_aws: OnAws
) -> None:
    console = cloud_init_console(on_aws.host_key, prefix="ec2: ", keys_block=False)
    on_aws.ec2.show_console(on_aws.instance_id, console)
    boot = aws_bootstrapper(world, on_aws)
    assert await boot.link(AWS_NODE, "h100", on_aws.instance_id) is None
    await world.until(lambda: boot.health(AWS_NODE) is True)


async def test_a_wrong_printed_key_is_refused_with_zero_commands_sent(
    world: World, on_aws: OnAws
) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    on_aws.ec2.show_console(on_aws.instance_id, cloud_init_console(stranger))
    boot = aws_bootstrapper(world, on_aws)
    assert await boot.link(AWS_NODE, "h100", on_aws.instance_id) is None
    node = world.fleet.nodes[AWS_NODE]
    await world.until(lambda: node.link is LinkState.HOST_KEY_MISMATCH)
    assert node.link_error is not None and "no command was sent" in node.link_error
    assert boot.health(AWS_NODE) is None and node.hello is None
    assert nothing_ran(on_aws.sim)


async def test_a_wrong_printed_fingerprint_is_refused_before_linking(
    world: World, on_aws: OnAws
) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    console = cloud_init_console(stranger, keys_block=False)
    on_aws.ec2.show_console(on_aws.instance_id, console)
    boot = aws_bootstrapper(world, on_aws)
    refused = await boot.link(AWS_NODE, "h100", on_aws.instance_id)
    assert refused is not None
    assert refused.startswith(
        f"cloud node {AWS_NODE}: refused: 127.0.0.1:{on_aws.sim.port} presents host key "
        f"{fingerprint(on_aws.host_key)}, which is not among the fingerprints instance "
        f"{on_aws.instance_id} printed on its console ({fingerprint(stranger)})"
    )
    assert not boot.linked(AWS_NODE) and AWS_NODE not in world.fleet.nodes
    assert nothing_ran(on_aws.sim)


async def test_an_aws_console_without_keys_is_waited_on_and_read_sparingly(
    world: World, on_aws: OnAws
) -> None:
    now = [1000.0]
    boot = aws_bootstrapper(world, on_aws, clock=lambda: now[0])
    # moto's own console: a kernel log, no host keys.
    waiting = await boot.link(AWS_NODE, "h100", on_aws.instance_id)
    assert waiting == (
        f"cloud node {AWS_NODE}: instance {on_aws.instance_id} has not shown its SSH host keys "
        "on its console yet (cloud-init prints them once sshd has keys; the cloud shows "
        "console output minutes after boot), and its pool names no bootstrap.host_ca; will "
        "look again, until boot_timeout_s"
    )
    assert on_aws.reads() == 1
    now[0] += CONSOLE_POLL_S - 1  # too soon: the same answer, EC2 not asked again
    assert await boot.link(AWS_NODE, "h100", on_aws.instance_id) == waiting
    assert on_aws.reads() == 1
    on_aws.ec2.show_console(on_aws.instance_id, cloud_init_console(on_aws.host_key))
    now[0] += 1
    assert await boot.link(AWS_NODE, "h100", on_aws.instance_id) is None
    assert on_aws.reads() == 2


async def test_an_aws_instance_that_is_not_running_is_waited_on(
    world: World, on_aws: OnAws
) -> None:
    await on_aws.provider.terminate([on_aws.instance_id])
    boot = aws_bootstrapper(world, on_aws)
    waiting = await boot.link(AWS_NODE, "h100", on_aws.instance_id)
    assert waiting is not None and "is not running (or has no address yet)" in waiting
    assert on_aws.reads() == 0
    gone = await boot.link("h100-x-1", "h100", "i-0000000000000dead")
    assert gone is not None and "instance i-0000000000000dead is not running" in gone


async def test_what_cannot_be_linked_says_why(world: World) -> None:
    boot = world.bootstrapper()
    no_pool = await boot.link(NODE, "tpu", "i-1")
    assert no_pool is not None and "there is no pool named 'tpu' (pools: gpu)" in no_pool
    not_running = await boot.link(NODE, "gpu", "i-not-there")
    assert not_running is not None and "instance i-not-there is not running" in not_running
    assert NODE not in world.fleet.nodes

    # A name the console already watches (an on-prem node's) is not taken over.
    endpoint = await world.running()
    onprem = NodeSpec(name=NODE, address="127.0.0.1", port=1, site="lab", user="tidectl")
    world.collector.add_node(onprem)
    taken = await boot.link(NODE, "gpu", endpoint.instance_id)
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
    assert await boot.link(NODE, "gpu", endpoint.instance_id) is None
    await world.until(lambda: boot.health(NODE) is not None)
    assert await boot.run(NODE, f"echo joined {NODE}", 10) is None
    failed = await boot.run(NODE, "false", 10)
    assert failed == f"'false' exited 1 on {NODE}"
    missing = await boot.run(NODE, "slurmd -N x", 10)
    assert missing is not None and "exited 127" in missing and "slurmd: not found" in missing
