"""Collection in worker processes, end to end: real worker processes, real SSH to a
simulated cluster served in the test's process, the real agent. The console's fleet ends up
with what an in-process collector sees; a fault shows through its worker; a worker killed
outright is said on its nodes and started again; nodes join and leave; commands run."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tidectl.console.collector import Collector
from tidectl.console.collectors import make_collector
from tidectl.console.config.loader import load_config
from tidectl.console.config.model import AgentSettings, ClusterConfig, CollectorSettings
from tidectl.console.fleet import Fleet
from tidectl.console.model import LinkState, Severity
from tidectl.console.shard import collector as shard_collector
from tidectl.console.shard.collector import ShardedCollector
from tidectl.console.sim.injector import SimFaults
from tidectl.console.sim.server import SimOptions, SimServer

NODES = 4


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[SimServer, ClusterConfig]]:
    async with SimServer(SimOptions(out=tmp_path / "sim", nodes=NODES, base_port=0)) as srv:
        config = load_config(srv.layout.cluster_toml)
        config = replace(
            config,
            agent=AgentSettings(interval_s=0.25),
            ssh=replace(config.ssh, reconnect_min_s=0.1, reconnect_max_s=0.5),
            collector=CollectorSettings(workers=2),
        )
        yield srv, config


async def until(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {timeout_s} s: {what}") from None


def streaming(fleet: Fleet, names: object = None) -> bool:
    nodes = [n for n in fleet.nodes.values() if names is None or n.name in names]  # type: ignore[operator]
    return all(n.link is LinkState.STREAMING and n.has_sample for n in nodes)


async def test_workers_give_the_console_what_an_in_process_collector_sees(
    cluster: tuple[SimServer, ClusterConfig],
) -> None:
    _, config = cluster
    ours, theirs = Fleet(config.nodes, config.health), Fleet(config.nodes, config.health)
    sharded = make_collector(config, ours)
    assert isinstance(sharded, ShardedCollector)
    async with sharded, Collector(config, theirs):
        assert sorted(set(sharded.links.values())) == [0, 1]  # both workers have nodes
        await until(lambda: streaming(ours) and streaming(theirs), "every node streaming")
        await until(lambda: all(len(n.history) >= 3 for n in ours.nodes.values()), "history")
        for name, node in ours.nodes.items():
            other = theirs.nodes[name]
            assert node.health is other.health is Severity.OK
            assert node.findings == other.findings == []
            assert node.hello is not None and other.hello is not None
            assert node.hello.facts == other.hello.facts  # (two streams: two hello times)
            assert abs(node.sample.seq - other.sample.seq) <= 2  # type: ignore[union-attr]
            assert node.gpu_stats[0] == other.gpu_stats[0] == 8
            assert set(node.rates.ib) == set(other.rates.ib) != set()
        summary = ours.summary()
        assert (summary.nodes, summary.gpus_total) == (NODES, NODES * 8)
        assert sharded.lines_decoded > 0 and sharded.lines_refused == 0
        results = [await sharded.run_on(name, "hostname", 10) for name in ours.nodes]
        assert [(r.exit_status, r.stdout.strip()) for r in results] == [
            (0, name) for name in ours.nodes
        ]
        missing = await sharded.run_on("nobody", "hostname", 10)
        assert missing.error == "the collector does not watch this node"


async def test_a_fault_shows_through_its_worker(
    cluster: tuple[SimServer, ClusterConfig],
) -> None:
    srv, config = cluster
    fleet = Fleet(config.nodes, config.health)
    async with make_collector(config, fleet):
        await until(lambda: streaming(fleet), "every node streaming")
        SimFaults(srv.layout.out).inject("sim0003", "xid gpu=2 code=79")
        await until(
            lambda: fleet.nodes["sim0003"].health is Severity.CRITICAL, "the XID in the console"
        )
        assert [f.code for f in fleet.nodes["sim0003"].findings][:1] == ["gpu.xid"]
        assert fleet.nodes["sim0001"].health is Severity.OK


async def test_a_killed_worker_is_said_on_its_nodes_and_started_again(
    cluster: tuple[SimServer, ClusterConfig],
) -> None:
    _, config = cluster
    fleet = Fleet(config.nodes, config.health)
    collector = make_collector(config, fleet)
    assert isinstance(collector, ShardedCollector)
    async with collector:
        await until(lambda: streaming(fleet), "every node streaming")
        victim = collector.worker_pids[0]
        its = [name for name, worker in collector.links.items() if worker == 0]
        os.kill(victim, signal.SIGKILL)
        await until(
            lambda: all(fleet.nodes[n].link is LinkState.UNREACHABLE for n in its),
            "its nodes said unreachable",
        )
        said = fleet.nodes[its[0]].link_error or ""
        assert said.startswith("the collector's worker process ended (status -9)"), said
        assert streaming(fleet, set(fleet.nodes) - set(its))  # the other worker's go on
        await until(lambda: streaming(fleet), "its nodes streaming again", timeout_s=60)
        assert victim not in collector.worker_pids


async def test_nodes_join_and_leave_through_the_workers(
    cluster: tuple[SimServer, ClusterConfig],
) -> None:
    _, config = cluster
    first, joiner = config.nodes[:-1], config.nodes[-1]
    fleet = Fleet(first, config.health)
    collector = make_collector(replace(config, nodes=first), fleet)
    async with collector:
        await until(lambda: streaming(fleet), "the first nodes streaming")
        collector.add_node(joiner)
        assert joiner.name in collector.links and joiner.name in fleet.nodes
        await until(lambda: streaming(fleet, {joiner.name}), "the joiner streaming")
        await collector.remove_node(joiner.name)
        assert joiner.name not in fleet.nodes and joiner.name not in collector.links
        result = await collector.run_on(joiner.name, "hostname", 10)
        assert result.error == "the collector does not watch this node"
        await collector.remove_node(joiner.name)  # again: a no-op


async def test_workers_that_cannot_start_are_said_and_the_start_gives_up_with_a_sentence(
    cluster: tuple[SimServer, ClusterConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, config = cluster
    monkeypatch.setattr(shard_collector, "START_TIMEOUT_S", 1.5)
    monkeypatch.setattr(sys, "executable", "/nonexistent/python3")
    fleet = Fleet(config.nodes, config.health)
    collector = make_collector(config, fleet)
    with pytest.raises(shard_collector.WorkersDidNotStart) as refused:
        await collector.start()
    assert "did not start within 1.5 s" in str(refused.value)
    assert "[collector] workers = 0" in str(refused.value)
    said = fleet.nodes["sim0001"].link_error or ""
    assert said.startswith("the collector's worker process could not start"), said
    assert "/nonexistent/python3" in said
