"""Nodes joining and leaving a running collector (cloud nodes), against in-process SSH nodes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from tests.fakes.ssh_node import FakeNode, make_fake_node
from tidectl.console.collector import Collector
from tidectl.console.config.model import AgentSettings, ClusterConfig, NodeSpec, Site, SshSettings
from tidectl.console.fleet import DuplicateNodeError, Fleet
from tidectl.console.model import LinkState
from tidectl.console.thresholds import HealthThresholds
from tidectl.console.transport.deploy import AgentPackage

PACKAGE = AgentPackage.build()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[FakeNode]:
    fake = await make_fake_node(tmp_path / "node").start()
    yield fake
    await fake.stop()


def config(tmp_path: Path, nodes: tuple[NodeSpec, ...] = ()) -> ClusterConfig:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.touch()
    return ClusterConfig(
        name="t",
        path=tmp_path / "cluster.toml",
        ssh=SshSettings(
            user="tidectl",
            identity_file=None,
            known_hosts=known_hosts,
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
        ),
        agent=AgentSettings(interval_s=0.1),
        sites=(Site("lab"),),
        nodes=nodes,
        health=HealthThresholds(),
    )


def spec(node: FakeNode, name: str) -> NodeSpec:
    return NodeSpec(
        name=name,
        address="127.0.0.1",
        port=node.port,
        site="lab",
        user="tidectl",
        known_hosts=node.known_hosts.read_text(),
        identity_file=node.client_key_path,
    )


async def until(fleet: Fleet, check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for the fleet's changes until ``check()`` holds."""
    changed = asyncio.Event()
    unsubscribe = fleet.subscribe(lambda _names: changed.set())
    try:
        async with asyncio.timeout(timeout):
            while not check():
                changed.clear()
                await changed.wait()
    finally:
        unsubscribe()


async def test_a_node_added_to_a_running_collector_streams_and_leaves_cleanly(
    node: FakeNode, tmp_path: Path
) -> None:
    fleet = Fleet((), HealthThresholds(), coalesce_s=0)
    async with Collector(config(tmp_path), fleet, package=PACKAGE) as collector:
        collector.add_node(spec(node, "c1"))
        await until(fleet, lambda: fleet.nodes["c1"].sample is not None)
        assert fleet.nodes["c1"].link is LinkState.STREAMING
        conn = collector.links["c1"].conn
        assert conn is not None

        await collector.remove_node("c1")
        assert "c1" not in fleet.nodes and "c1" not in collector.links
        assert conn.is_closed()
        samples = collector.lines_decoded
        await asyncio.sleep(0.3)  # three agent intervals: nothing more arrives for it
        assert collector.lines_decoded == samples
        await collector.remove_node("c1")  # again, or never added: nothing to do
        await collector.remove_node("never-there")

        # The name is free again, and the collector still runs links it is given.
        collector.add_node(spec(node, "c1"))
        await until(fleet, lambda: fleet.nodes["c1"].link is LinkState.STREAMING)


async def test_a_node_added_before_start_is_started_with_the_others(
    node: FakeNode, tmp_path: Path
) -> None:
    fleet = Fleet((), HealthThresholds(), coalesce_s=0)
    collector = Collector(config(tmp_path), fleet, package=PACKAGE)
    collector.add_node(spec(node, "c1"))
    await asyncio.sleep(0.2)
    assert fleet.nodes["c1"].link is LinkState.CONNECTING and node.connections == set()
    async with collector:
        await until(fleet, lambda: fleet.nodes["c1"].sample is not None)


async def test_a_name_already_watched_is_refused(node: FakeNode, tmp_path: Path) -> None:
    onprem = NodeSpec(name="gpu01", address="127.0.0.1", port=1, site="lab", user="tidectl")
    cfg = config(tmp_path, nodes=(onprem,))
    fleet = Fleet((*cfg.nodes, spec(node, "fleet-only")), HealthThresholds())
    collector = Collector(cfg, fleet, package=PACKAGE)
    with pytest.raises(DuplicateNodeError, match="'gpu01' is already watched by the collector"):
        collector.add_node(spec(node, "gpu01"))
    assert collector.links["gpu01"].spec is onprem  # the first one is untouched
    with pytest.raises(DuplicateNodeError, match="'fleet-only' is listed twice"):
        collector.add_node(spec(node, "fleet-only"))
    assert "fleet-only" not in collector.links
