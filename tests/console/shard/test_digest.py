"""A collector worker's fleet and the console's: what the worker derives (link, health,
findings, events, history, rates, GPU counts) arrives whole through ``NodeDigest``s; the
console decodes a sample only when it is read; and the one judgement that needs the whole
fleet — a port slower than its peers' rate — is made on every worker's ports."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from tests.console.test_health import FakeClock, SimFeed
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import ClusterConfig
from tidectl.console.fleet import Fleet, NodeState
from tidectl.console.model import LinkState
from tidectl.console.server.stream import NodeInputs
from tidectl.console.shard.digest import Sent
from tidectl.console.shard.worker import WorkerFleet
from tidectl.console.view.rows import node_row

Mutate = Callable[[dict[str, Any]], None]


def config_of(tmp_path: Path, names: str) -> ClusterConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "known_hosts").write_text("")
    text = '[cluster]\nname = "c"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
    return parse_config(text + f'[[nodes]]\nnames = "{names}"\n', tmp_path / "cluster.toml")


class Cluster:
    """Workers' fleets (each over its share of the nodes) and the console's fleet they
    report to, on one clock, with what ShardedCollector does in between."""

    def __init__(self, tmp_path: Path, names: str, shares: Sequence[Sequence[str]]) -> None:
        self.clock = FakeClock()
        config = config_of(tmp_path, names)
        self.console = Fleet(config.nodes, config.health, clock=self.clock)
        self.console.derived_elsewhere = True
        self.workers: list[tuple[WorkerFleet, Sent, dict[str, SimFeed]]] = []
        seed = 0
        for share in shares:
            fleet = WorkerFleet(
                replace(config, nodes=tuple(config.node(n) for n in share)), history_s=600
            )
            fleet._clock = self.clock  # the fleet's clock: the tests move it
            feeds = {}
            for name in share:
                feeds[name] = SimFeed(fleet, name, self.clock, seed=seed)
                feeds[name].start()
                seed += 1
            self.workers.append((fleet, Sent(), feeds))

    def tick(self, mutate: dict[str, Mutate] | None = None) -> None:
        """A second passes: every node samples; the digests reach the console; if the
        fleet's IB rates moved, every worker hears of it."""
        self.clock.advance(1.0)
        moved = False
        for fleet, sent, feeds in self.workers:
            for name, feed in feeds.items():
                feed.send((mutate or {}).get(name))
                moved |= self.digest(fleet, sent, name)
        if moved:
            for fleet, _, _ in self.workers:
                fleet.set_peer_context(self.console.peer_context)

    def digest(self, fleet: WorkerFleet, sent: Sent, name: str) -> bool:
        return self.console.take(name, sent.digest(fleet.nodes[name], fleet.rows.pop(name, [])))


def test_the_console_has_what_the_worker_derived_and_decodes_samples_when_read(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path, "n[1-2]", [["n1", "n2"]])
    worker, sent, _ = cluster.workers[0]

    def hot(record: dict[str, Any]) -> None:
        record["probes"]["gpu"]["gpus"][0]["temp_c"] = 95.0

    for _ in range(3):
        cluster.tick()
    cluster.tick({"n1": hot, "n2": hot})
    for name in ("n1", "n2"):
        theirs: NodeState = worker.nodes[name]
        ours: NodeState = cluster.console.nodes[name]
        # Not decoded yet: the summary and can_hear need no sample (views read a handful).
        assert ours._undecoded and ours.has_sample
        assert cluster.console.summary() == worker.summary()
        # The fleet table's row, from the figures the worker sent: still undecoded.
        assert node_row(ours) == node_row(theirs) and ours.figures.gpus == 8
        # A service's full stream forwards the line as it came, still undecoded.
        forwarded = NodeInputs()(name, ours)
        assert forwarded is not None and bytes(forwarded["sample"]) == theirs.sample_line
        assert ours._undecoded
        assert ours.sample == theirs.sample and not ours._undecoded
        assert (ours.link, ours.health, ours.health_since, ours.stale) == (
            LinkState.STREAMING,
            theirs.health,
            theirs.health_since,
            theirs.stale,
        )
        assert [f.code for f in ours.findings] == ["gpu.temp"]
        assert ours.findings == theirs.findings
        assert list(ours.events) == list(theirs.events)
        assert ours.history.times() == theirs.history.times() and len(ours.history) == 4
        for series in ("gpu_util_pct", "ib_rx_bytes_s", "nic_tx_bytes_s"):
            assert _values(ours.history.node_series(series)) == _values(
                theirs.history.node_series(series)
            )
        assert _values(ours.history.gpu_series(0, "temp_c")) == _values(
            theirs.history.gpu_series(0, "temp_c")
        )
        assert ours.rates.ib_total("rcv_bytes") == theirs.rates.ib_total("rcv_bytes")
        assert ours.rates.ib and ours.rates.ib == theirs.rates.ib  # worked out when read
        assert ours.rates.nic == theirs.rates.nic
        assert ours.rates.ib_errors == theirs.rates.ib_errors
        assert ours.hello == theirs.hello and ours.expected_gpus == theirs.expected_gpus
    # A digest with nothing new (a link change only) carries no line, no rows, no events
    # but that change.
    worker.on_link("n1", LinkState.STALE, "no data from the agent for 3 s")
    digest = sent.digest(worker.nodes["n1"], worker.rows.pop("n1", []))
    assert (digest.line, digest.hello, digest.rows, digest.rates) == (None, None, [], None)
    assert [(e.before, e.after) for e in digest.events] == [
        ("streaming", "stale"),
        ("critical", "unknown"),  # a node we cannot hear is unknown
    ]
    cluster.console.take("n1", digest)
    assert cluster.console.nodes["n1"].link is LinkState.STALE
    assert list(cluster.console.nodes["n1"].events) == list(worker.nodes["n1"].events)


def _values(series: list[float]) -> list[float | None]:
    """A series with its gaps (NaN, which equals nothing) as None."""
    return [None if math.isnan(v) else v for v in series]


def _slow(record: dict[str, Any]) -> None:
    for port in record["probes"]["ib"]["ports"]:
        port["rate_gbps"] = 200
        port["rate"] = "200 Gb/sec (4X HDR)"


def test_a_port_slower_than_its_peers_on_other_workers_is_found(tmp_path: Path) -> None:
    """n1 and n2 run at the sim's 400 Gb/s on one worker; n3, alone on another, at 200:
    only the console's sum of both workers' ports says n3 is the odd one out."""
    cluster = Cluster(tmp_path / "split", "n[1-3]", [["n1", "n2"], ["n3"]])
    alone = Cluster(tmp_path / "alone", "n3", [["n3"]])  # the same worker, without peers
    for _ in range(3):
        cluster.tick({"n3": _slow})
        alone.tick({"n3": _slow})
    codes = {name: [f.code for f in node.findings] for name, node in cluster.console.nodes.items()}
    assert "ib.rate_degraded" in codes["n3"]
    assert "ib.rate_degraded" not in codes["n1"] + codes["n2"]
    assert "ib.rate_degraded" not in [f.code for f in alone.console.nodes["n3"].findings]
