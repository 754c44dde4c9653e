"""Fleets of simulated nodes for the view tests, built as tests/console/test_fleet.py does.

Every node is a real ``SimNode`` whose records go through ``protocol.encode`` and the console's
decoder into a real ``Fleet`` on a ``FakeClock``; faults are the simulator's own
(``SimNode.inject``), exact figures are edits of the wire record (``Mutate``) before it is
decoded. Nothing here builds a ``NodeState`` or a ``NodeRow`` by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tests.console.test_health import FakeClock, Mutate, Record, SimFeed
from tidectl.agents.probes.simfaults import Fault
from tidectl.console.config.model import NodeSpec
from tidectl.console.fleet import Fleet, NodeState
from tidectl.console.model import LinkState
from tidectl.console.thresholds import HealthThresholds
from tidectl.console.view.rows import POOL_LABEL, NodeRow, node_row


@dataclass(frozen=True, slots=True)
class Place:
    """Where a node of a test fleet sits: its name, site and (optional) pool label."""

    name: str
    site: str = "dc1"
    pool: str | None = None


def node_spec(place: Place) -> NodeSpec:
    labels = {POOL_LABEL: place.pool} if place.pool is not None else {}
    return NodeSpec(
        name=place.name, address="127.0.0.1", port=22, site=place.site, user="root", labels=labels
    )


class SimFleet:
    """A Fleet and one SimFeed per node, on one fake clock."""

    def __init__(
        self, places: Iterable[Place | str], *, start: bool = True, silent: Iterable[str] = ()
    ) -> None:
        """``start``: every node's link goes to streaming and its agent says hello; nodes in
        ``silent`` never start and never send (a node the console cannot reach)."""
        placed = [Place(p) if isinstance(p, str) else p for p in places]
        self.clock = FakeClock()
        self.fleet = Fleet([node_spec(p) for p in placed], HealthThresholds(), clock=self.clock)
        self.feeds = {
            p.name: SimFeed(self.fleet, p.name, self.clock, seed)
            for seed, p in enumerate(placed, 1)
        }
        self.silent = frozenset(silent)
        if start:
            for name in self.talking:
                self.feeds[name].start()

    @property
    def talking(self) -> list[str]:
        return [name for name in self.feeds if name not in self.silent]

    def tick(
        self,
        seconds: float = 1.0,
        *,
        only: Iterable[str] | None = None,
        mutate: Mapping[str, Mutate] | Mutate | None = None,
    ) -> None:
        """One sample per second of the fake clock from every node (or those in ``only``).

        ``mutate``: one edit for every node, or edits by node name. Silent nodes stay silent.
        """
        names = self.talking if only is None else list(only)
        for _ in range(round(seconds)):
            self.clock.advance(1.0)
            for name in names:
                edit = mutate.get(name) if isinstance(mutate, Mapping) else mutate
                self.feeds[name].send(edit)

    def state(self, name: str) -> NodeState:
        return self.fleet.nodes[name]

    def row(self, name: str) -> NodeRow:
        return node_row(self.state(name))

    @property
    def now(self) -> float:
        return self.clock.t


def numbered(prefix: str, count: int, **place: str) -> list[Place]:
    """``prefix1`` … ``prefixN``, unpadded so natural order differs from string order."""
    return [Place(f"{prefix}{i}", **place) for i in range(1, count + 1)]


# --- edits of a sample record -----------------------------------------------------------------


def every_gpu(**fields: float) -> Mutate:
    """Set fields (``util_pct``, ``temp_c``, ...) on every GPU of the record."""

    def mutate(record: Record) -> None:
        for gpu in record["probes"]["gpu"]["gpus"]:
            gpu.update(fields)

    return mutate


def gpu_utils(utils: list[float]) -> Mutate:
    """GPU i gets ``utils[i]`` percent."""

    def mutate(record: Record) -> None:
        for gpu, util in zip(record["probes"]["gpu"]["gpus"], utils, strict=True):
            gpu["util_pct"] = util

    return mutate


def mount_used(mountpoint: str, pct: float) -> Mutate:
    """Make ``mountpoint`` ``pct`` percent full (as df's Use%: used over used + avail)."""

    def mutate(record: Record) -> None:
        for mount in record["probes"]["storage"]["mounts"]:
            if mount["mountpoint"] == mountpoint:
                total = mount["used_bytes"] + mount["avail_bytes"]
                mount["used_bytes"] = round(total * pct / 100.0)
                mount["avail_bytes"] = total - mount["used_bytes"]

    return mutate


def gpu_mem_used(fraction: float) -> Mutate:
    """Every GPU's memory ``fraction`` used."""

    def mutate(record: Record) -> None:
        for gpu in record["probes"]["gpu"]["gpus"]:
            gpu["mem_used_bytes"] = round(gpu["mem_total_bytes"] * fraction)

    return mutate


def all_mounts_used(pct: float) -> Mutate:
    """Every mount ``pct`` percent full."""

    def mutate(record: Record) -> None:
        for mount in record["probes"]["storage"]["mounts"]:
            mount_used(mount["mountpoint"], pct)(record)

    return mutate


def nic_rate(bytes_per_s: float) -> Mutate:
    """eth0 receives ``bytes_per_s`` and sends nothing (counters follow the sample's clock)."""

    def mutate(record: Record) -> None:
        nic = record["probes"]["net"]["nics"]["eth0"]
        nic["rx_bytes"] = round(record["mono"] * bytes_per_s)
        nic["tx_bytes"] = 0

    return mutate


def failed_section(name: str) -> Mutate:
    def mutate(record: Record) -> None:
        record["probes"][name] = {"error": "EIO"}

    return mutate


def chain(*edits: Mutate) -> Mutate:
    def mutate(record: Record) -> None:
        for edit in edits:
            edit(record)

    return mutate


# --- a fleet with a little of everything ------------------------------------------------------

#: Node → what is wrong with it in ``mixed_fleet``.
MIXED = {
    "a1": "ok",
    "a2": "an IB port down",
    "a3": "/scratch at 93 %",
    "h1": "XID 79 on GPU 3",
    "h2": "ok",
    "c1": "unreachable, never sampled",
}


def mixed_fleet() -> SimFleet:
    """Two pools of two sites and a cloud node: ``MIXED`` says which node has what."""
    sim = SimFleet(
        [
            Place("a1", site="dc1", pool="a100"),
            Place("a2", site="dc1", pool="a100"),
            Place("a3", site="dc1", pool="a100"),
            Place("h1", site="dc2", pool="h100"),
            Place("h2", site="dc2", pool="h100"),
            Place("c1", site="aws"),
        ],
        silent=["c1"],
    )
    sim.fleet.on_link("c1", LinkState.UNREACHABLE, "connection refused by 127.0.0.1 port 22")
    sim.tick(2)
    a2 = sim.feeds["a2"].node
    a2.inject(Fault("ib_down", port=a2.ports[0]))
    sim.feeds["a3"].node.inject(Fault("disk_full", mount="/scratch", pct=93.0))
    sim.feeds["h1"].node.inject(Fault("xid", gpu=3, code=79))
    sim.tick(2)
    return sim
