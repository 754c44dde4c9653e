"""The fleet and the lifecycle as Prometheus metrics, built when Prometheus scrapes.

``FleetCollector`` is a prometheus_client collector: each ``collect()`` walks the live fleet
(and, given one, the lifecycle store behind a ``ControlPlane``) and yields metric families
built from what is there now. Nothing is updated per sample, so between scrapes the console
pays nothing for being scraped. ``docs/metrics.md`` lists every name, type and label; the
names and label sets are a contract with dashboards and alerts, and a test holds the two in
step.

Two rules shape what appears:

* A node's sample metrics (host, GPU, IB, filesystem) appear only while its latest sample
  describes it now: the link streams and the agent is not stale (``health.can_hear``). A
  silent node keeps ``tidectl_node_up 0`` and its health, and loses the rest, so a dashboard
  shows a gap, never an old value dressed as a new one.
* A value the agent could not read (a ``null`` field, a section that failed this tick) is
  left out, not reported as 0.

A scrape has two halves. ``FleetCollector.snapshot()`` runs on the console's event loop (the
fleet and the store belong to it) and only takes references: each node's latest sample (a
record the fleet replaces, never changes), its health and counts, and the few lifecycle
numbers. That is a few milliseconds for a thousand nodes. ``Snapshot.collect()`` then builds
the families from those references on any thread; ``MetricsServer`` runs it, and the text
encoding, in a worker thread, so a large scrape does not hold the loop. ``collect()`` on the
collector itself does both at once, for a registry used on the loop's thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tidectl.console import schema
from tidectl.console.config.model import PoolSpec
from tidectl.console.fleet import Fleet, NodeState
from tidectl.console.health import can_hear, is_stale
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import State
from tidectl.console.model import LinkState

__all__ = ["FleetCollector", "LifecycleSource", "Snapshot"]

#: The node label a cloud node's pool is in (lifecycle.bootstrap.POOL_LABEL); on-prem nodes
#: have none, and their ``pool`` label is empty (which Prometheus stores as absent).
POOL_LABEL = "pool"
#: The IBA PortInfo state of a port that carries traffic.
IB_STATE_ACTIVE = 4
#: The IB error counters exported, by their sysfs names (the twelve health reads, in
#: rates.IB_ERROR_COUNTER_BITS): label values are part of the contract, so listed here.
IB_ERROR_COUNTERS = (
    "symbol_error",
    "link_error_recovery",
    "link_downed",
    "port_rcv_errors",
    "port_rcv_remote_physical_errors",
    "port_rcv_switch_relay_errors",
    "port_xmit_discards",
    "port_xmit_constraint_errors",
    "port_rcv_constraint_errors",
    "local_link_integrity_errors",
    "excessive_buffer_overrun_errors",
    "VL15_dropped",
)

NODE = ("node", "site", "pool")
GPU = (*NODE, "gpu")
PORT = (*NODE, "hca", "port")
MOUNT = (*NODE, "mountpoint")
#: Lifecycle states a node can be counted in (terminated nodes are history, not capacity).
LIVE_STATES = tuple(state for state in State if state is not State.TERMINATED)


class LifecycleSource(Protocol):
    """What the collector reads of the lifecycle: ``ControlPlane`` has exactly these."""

    def nodes(self, pool: str | None = None, *, live_only: bool = False) -> list[NodeRecord]: ...

    def pools(self) -> Sequence[PoolSpec]: ...

    def burn_rate(self, pool: str | None = None) -> float: ...

    def spend(self, *, pool: str | None = None, intent_id: str | None = None) -> float: ...


def _gauge(name: str, doc: str, labels: Sequence[str], unit: str = "") -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels, unit=unit)


class _NodeFamilies:
    """One scrape's families of the fleet, filled node by node."""

    def __init__(self) -> None:
        g = _gauge
        self.up = g("tidectl_node_up", "1 while the agent streams fresh samples, else 0.", NODE)
        self.health = g(
            "tidectl_node_health",
            "Node health level: 0 ok, 1 unknown, 2 warn, 3 critical.",
            NODE,
        )
        self.findings = g(
            "tidectl_node_findings",
            "Health findings on the node, by severity.",
            (*NODE, "severity"),
        )
        self.cpu = g("tidectl_node_cpu_utilisation_ratio", "CPU busy time, 0 to 1.", NODE)
        self.load1 = g("tidectl_node_load1", "One-minute load average.", NODE)
        self.mem_total = g("tidectl_node_memory_total_bytes", "Memory installed.", NODE)
        self.mem_avail = g(
            "tidectl_node_memory_available_bytes", "Memory available to new work.", NODE
        )
        self.gpu_util = g("tidectl_gpu_utilisation_ratio", "GPU busy time, 0 to 1.", GPU)
        self.gpu_mem_used = g("tidectl_gpu_memory_used_bytes", "GPU memory in use.", GPU)
        self.gpu_mem_total = g("tidectl_gpu_memory_total_bytes", "GPU memory installed.", GPU)
        self.gpu_temp = g("tidectl_gpu_temperature_celsius", "GPU core temperature.", GPU)
        self.gpu_power = g("tidectl_gpu_power_watts", "GPU power draw.", GPU)
        self.gpu_ecc = CounterMetricFamily(
            "tidectl_gpu_ecc_errors",
            "ECC errors since the driver loaded (volatile counters), by type.",
            labels=(*GPU, "type"),
        )
        self.gpu_xids = g(
            "tidectl_gpu_recent_xids",
            "XID events the GPU reported within the health rules' hold time (xid_hold_s).",
            GPU,
        )
        self.ib_state = g(
            "tidectl_ib_port_state",
            "IB port state (IBA PortInfo): 1 down, 2 init, 3 armed, 4 active, 5 active defer.",
            PORT,
        )
        self.ib_active = g("tidectl_ib_port_active", "1 when the IB port is active, else 0.", PORT)
        self.ib_rate = g(
            "tidectl_ib_port_rate_bytes_per_second", "IB port link rate (signalling).", PORT
        )
        self.ib_errors = CounterMetricFamily(
            "tidectl_ib_port_errors",
            "IB port error counters (PMA PortCounters), by the counter's sysfs name.",
            labels=(*PORT, "counter"),
        )
        self.ib_xmit = CounterMetricFamily(
            "tidectl_ib_port_transmit_bytes", "Bytes the IB port sent.", labels=PORT
        )
        self.ib_rcv = CounterMetricFamily(
            "tidectl_ib_port_receive_bytes", "Bytes the IB port received.", labels=PORT
        )
        self.fs_size = g("tidectl_filesystem_size_bytes", "Filesystem size.", MOUNT)
        self.fs_used = g("tidectl_filesystem_used_bytes", "Filesystem space used.", MOUNT)
        self.fs_avail = g(
            "tidectl_filesystem_avail_bytes", "Filesystem space available to users.", MOUNT
        )
        self.fs_stale = g(
            "tidectl_filesystem_stale", "1 when the mount is stale (e.g. NFS), else 0.", MOUNT
        )

    def all(self) -> list[Metric]:
        return [value for value in vars(self).values() if isinstance(value, Metric)]

    def add(self, node: _NodeView) -> None:
        base = list(node.labels)
        self.up.add_metric(base, 1.0 if node.up else 0.0)
        self.health.add_metric(base, float(node.health))
        self.findings.add_metric([*base, "warn"], float(node.warn))
        self.findings.add_metric([*base, "critical"], float(node.critical))
        if node.sample is None:
            return  # stale or never sampled: no old values reported as fresh
        probes = node.sample.probes
        self._host(base, probes.host)
        self._gpus(base, probes.gpu, node.xids)
        self._ib(base, probes.ib)
        self._storage(base, probes.storage)

    def _host(self, base: list[str], host: schema.HostSample | None) -> None:
        if host is None or host.error is not None:
            return
        _put(self.cpu, base, None if host.cpu_pct is None else host.cpu_pct / 100)
        _put(self.load1, base, host.load1)
        _put(self.mem_total, base, host.mem_total_bytes)
        _put(self.mem_avail, base, host.mem_available_bytes)

    def _gpus(self, base: list[str], section: schema.GpuSample | None, xids: Counter[int]) -> None:
        if section is None or section.error is not None:
            return
        for gpu in section.gpus:
            labels = [*base, str(gpu.index)]
            _put(self.gpu_util, labels, None if gpu.util_pct is None else gpu.util_pct / 100)
            _put(self.gpu_mem_used, labels, gpu.mem_used_bytes)
            _put(self.gpu_mem_total, labels, gpu.mem_total_bytes)
            _put(self.gpu_temp, labels, gpu.temp_c)
            _put(self.gpu_power, labels, gpu.power_w)
            _put(self.gpu_ecc, [*labels, "single_bit"], gpu.ecc_sbe_volatile)
            _put(self.gpu_ecc, [*labels, "double_bit"], gpu.ecc_dbe_volatile)
            self.gpu_xids.add_metric(labels, float(xids[gpu.index]))

    def _ib(self, base: list[str], section: schema.IbSample | None) -> None:
        if section is None or section.error is not None:
            return
        for port in section.ports:
            labels = [*base, port.hca, str(port.port)]
            _put(self.ib_state, labels, port.state)
            if port.state is not None:
                self.ib_active.add_metric(labels, 1.0 if port.state == IB_STATE_ACTIVE else 0.0)
            gbps = port.rate_gbps
            _put(self.ib_rate, labels, None if gbps is None else gbps * 1e9 / 8)
            counters = port.counters
            for counter in IB_ERROR_COUNTERS:
                _put(self.ib_errors, [*labels, counter], getattr(counters, counter))
            _put(self.ib_xmit, labels, port.xmit_bytes)
            _put(self.ib_rcv, labels, port.rcv_bytes)

    def _storage(self, base: list[str], section: schema.StorageSample | None) -> None:
        if section is None or section.error is not None:
            return
        for mount in section.mounts:
            labels = [*base, mount.mountpoint]
            self.fs_stale.add_metric(labels, 1.0 if mount.stale else 0.0)
            if mount.error is not None:
                continue
            _put(self.fs_size, labels, mount.size_bytes)
            _put(self.fs_used, labels, mount.used_bytes)
            _put(self.fs_avail, labels, mount.avail_bytes)


def _put(
    family: GaugeMetricFamily | CounterMetricFamily, labels: list[str], value: float | None
) -> None:
    """One sample, unless the agent could not read the value."""
    if value is not None:
        family.add_metric(labels, float(value))


@dataclass(frozen=True, slots=True)
class _NodeView:
    """What a scrape reports of one node, taken on the event loop."""

    labels: tuple[str, str, str]  # node, site, pool
    up: bool
    health: int
    warn: int
    critical: int
    #: The latest sample while it describes the node now, else None.
    sample: schema.Sample | None
    #: GPU index → XIDs within the hold time.
    xids: Counter[int]


@dataclass(frozen=True, slots=True)
class _LifecycleView:
    counts: Counter[tuple[str, State]]  # (pool, state) → live nodes
    pools: tuple[str, ...]  # configured pools, in order
    burn: tuple[float, ...]  # per pool, in that order
    spend: tuple[float, ...]


def _view(node: NodeState, fleet: Fleet, now: float) -> _NodeView:
    th = fleet.thresholds
    spec = node.spec
    severities = Counter(finding.severity.word for finding in node.findings)
    fresh = can_hear(node, th, now)
    return _NodeView(
        labels=(spec.name, spec.site, spec.labels.get(POOL_LABEL, "")),
        up=node.link is LinkState.STREAMING and not is_stale(node, th, now),
        health=int(node.health),
        warn=severities["warn"],
        critical=severities["critical"],
        sample=node.sample if fresh else None,
        xids=Counter(x.gpu for x in node.recent.xids if now - x.at <= th.xid_hold_s)
        if fresh
        else Counter(),
    )


def _lifecycle_view(source: LifecycleSource) -> _LifecycleView:
    pools = tuple(pool.name for pool in source.pools())
    return _LifecycleView(
        counts=Counter((r.pool or "", r.state) for r in source.nodes(live_only=True)),
        pools=pools,
        burn=tuple(source.burn_rate(pool) for pool in pools),
        spend=tuple(source.spend(pool=pool) for pool in pools),
    )


class Snapshot:
    """One scrape's reading, taken on the event loop; ``collect()`` may run on any thread."""

    def __init__(self, nodes: list[_NodeView] | None, lifecycle: _LifecycleView | None) -> None:
        self._nodes = nodes  # None: no fleet (an empty fleet still names its families)
        self._lifecycle = lifecycle

    def collect(self) -> list[Metric]:
        families: list[Metric] = []
        if self._nodes is not None:
            built = _NodeFamilies()
            for node in self._nodes:
                built.add(node)
            families.extend(built.all())
        if self._lifecycle is not None:
            families.extend(_lifecycle(self._lifecycle))
        return families


class FleetCollector:
    """A prometheus_client collector over a fleet and, optionally, the lifecycle.

    Register it with a ``CollectorRegistry`` used on the event loop's thread, or hand it to
    ``MetricsServer``, which calls :meth:`snapshot` on the loop and the rest off it.
    """

    def __init__(self, fleet: Fleet | None = None, lifecycle: LifecycleSource | None = None):
        if fleet is None and lifecycle is None:
            raise ValueError("a metrics collector needs a fleet, a lifecycle source, or both")
        self.fleet = fleet
        self.lifecycle = lifecycle

    def describe(self) -> Iterable[Metric]:
        """Nothing: registering must not read the fleet (that is the event loop's)."""
        return ()

    def snapshot(self) -> Snapshot:
        """References to what a scrape reports, taken now (call on the event loop)."""
        nodes: list[_NodeView] | None = None
        if self.fleet is not None:
            now = self.fleet.now()
            nodes = [_view(node, self.fleet, now) for node in self.fleet.nodes.values()]
        lifecycle = None if self.lifecycle is None else _lifecycle_view(self.lifecycle)
        return Snapshot(nodes, lifecycle)

    def collect(self) -> list[Metric]:
        return self.snapshot().collect()


def _lifecycle(view: _LifecycleView) -> list[Metric]:
    nodes = _gauge(
        "tidectl_lifecycle_nodes",
        "Nodes the lifecycle store holds, by pool and state (terminated not counted).",
        ("pool", "state"),
    )
    burn = _gauge(
        "tidectl_burn_rate_dollars_per_hour",
        "What the pool's billing cloud nodes cost an hour now.",
        ("pool",),
    )
    spend = CounterMetricFamily(
        "tidectl_spend_dollars",
        "Dollars the pool's cloud nodes have cost so far.",
        labels=("pool",),
    )
    # Every configured pool has every state, zeros included, so that a series does not vanish
    # when the last node leaves a state (an alert on it would otherwise go quiet, not resolve).
    keys = {(pool, state) for pool in view.pools for state in LIVE_STATES} | set(view.counts)
    for pool, state in sorted(keys):
        nodes.add_metric([pool, state.value], float(view.counts[pool, state]))
    for pool, burn_rate, spent in zip(view.pools, view.burn, view.spend, strict=True):
        burn.add_metric([pool], burn_rate)
        spend.add_metric([pool], spent)
    return [nodes, burn, spend]
