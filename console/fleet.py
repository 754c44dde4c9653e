"""The fleet: the live model of every node, fed by the collector, read by the front ends.

One ``NodeState`` per node holds what its agent said (hello, latest sample), what the console
derived from it (rates, history rings, findings, health) and how the link stands. The
collector calls ``on_hello``/``on_sample``/``on_link``/``on_agent_error``; nothing here does
I/O, and everything runs on the caller's thread (the console's event loop).

Front ends ``subscribe`` to changes. Changes are **coalesced**: a sample marks its node dirty,
and one flush per ``coalesce_s`` hands every subscriber the set of nodes that changed since
the last — a thousand samples a second become ten calls, each with the names to repaint.
Inside an asyncio loop the flush is scheduled with ``loop.call_later`` on the first change;
without a loop (tests, scripts) call ``flush()``. A subscriber that raises is logged and kept:
one broken panel must not blind the others, nor the fleet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import msgspec

from tidectl.console import schema
from tidectl.console.config.model import NodeSpec
from tidectl.console.figures import SampleFigures, figures_of
from tidectl.console.health import (
    PeerContext,
    PeerRates,
    PortShare,
    Recent,
    agent_interval,
    can_hear,
    evaluate,
    hca_types,
    is_stale,
    node_health,
    observe,
    port_share,
    same_port_rates,
)
from tidectl.console.history import NodeHistory, Row
from tidectl.console.model import Finding, LinkState, Severity
from tidectl.console.rates import NodeRates
from tidectl.console.thresholds import HealthThresholds

if TYPE_CHECKING:
    from tidectl.console.shard.digest import NodeDigest

log = logging.getLogger(__name__)

#: Transitions a node remembers (newest first).
MAX_EVENTS = 50
#: A GPU counts as in use above this utilisation.
IN_USE_UTIL_PCT = 5.0
#: History rings never hold more than this many samples per second of ``history_s``, so
#: an agent run at a very short interval cannot blow the memory budget.
MAX_SAMPLES_PER_S = 2.0

Subscriber = Callable[[frozenset[str]], None]
#: (GPUs listed, GPUs in use, utilisation sum, utilisations counted): ``NodeState.gpu_stats``.
GpuStats = tuple[int, int, float, int]
SAMPLE_DECODER: msgspec.json.Decoder[schema.Sample] = msgspec.json.Decoder(schema.Sample)


class UnknownNodeError(KeyError):
    """A record for a node the fleet does not hold (not in cluster.toml, or removed)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"node {self.name!r} is not part of this fleet; add it to cluster.toml first"


class DuplicateNodeError(ValueError):
    """Two nodes of one fleet with the same name."""


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """A transition of one node's health or link, at the fleet's clock."""

    at: float
    kind: Literal["health", "link"]
    before: str
    after: str
    detail: str | None = None  # the worst finding, or the link error


@dataclass(slots=True, eq=False)
class NodeState:
    """Everything the console knows about one node. Owned by ``Fleet``; front ends read it."""

    spec: NodeSpec
    history: NodeHistory
    health_since: float
    link: LinkState = LinkState.CONNECTING
    link_error: str | None = None
    hello: schema.Hello | None = None
    #: ``sample`` as the agent's line said it (when the collector handed it over): what a
    #: service forwards to attached consoles as is, rather than encode the record again.
    sample_line: bytes | None = None
    #: The latest sample, decoded (see ``sample``); None with ``_undecoded`` set: not yet.
    _sample: schema.Sample | None = None
    _undecoded: bool = False
    #: The line before ``sample_line``, kept by a fleet fed by collector workers: the
    #: per-port, per-interface rates are worked out from the two when a view asks.
    previous_line: bytes | None = None
    #: The fleet's clock when ``sample`` arrived; -inf (infinitely old) before the first.
    sample_at: float = -math.inf
    #: The fleet's clock when the agent last said anything valid (hello or sample).
    heard_at: float | None = None
    rates: NodeRates = field(default_factory=NodeRates)
    health: Severity = Severity.UNKNOWN
    findings: list[Finding] = field(default_factory=list)
    events: deque[NodeEvent] = field(default_factory=lambda: deque(maxlen=MAX_EVENTS))
    #: The last unreadable line or protocol error, until the next good sample.
    agent_error: str | None = None
    stale: bool = False
    #: One-shot events held for their hold time (XIDs, link_downed increments).
    recent: Recent = field(default_factory=Recent)
    #: This node's active ports by peer group and rate, as of ``sample`` (the fleet keeps it
    #: in step: health's quiet test for the port rules reads it).
    peer_share: PortShare = field(default_factory=Counter)
    #: HCA name → model, from the hello (peers for ib.rate_degraded are of the same model).
    hca_types: dict[str, str] = field(default_factory=dict)
    #: GPUs the hello's inventory lists (None: no inventory), read once for gpu.missing.
    expected_gpus: int | None = None
    #: The latest sample's GPUs: how many it lists (0 when its GPU section failed), how many
    #: are above ``IN_USE_UTIL_PCT``, and the sum and count of their utilisations — what
    #: the fleet's summary adds up without reading a thousand samples a second.
    gpu_stats: GpuStats = (0, 0, 0.0, 0)
    #: ``figures`` once worked out (or as a collector worker sent them); None: not yet.
    _figures: SampleFigures | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def sample(self) -> schema.Sample | None:
        """The latest sample. A fleet fed by collector workers holds only its line until a
        reader asks (a view shows a handful of a thousand nodes): decoded once, then kept."""
        if self._undecoded:
            self._undecoded = False
            assert self.sample_line is not None
            # The worker decoded this very line with the same schema: it cannot fail here.
            self._sample = SAMPLE_DECODER.decode(self.sample_line)
        return self._sample

    @sample.setter
    def sample(self, value: schema.Sample | None) -> None:
        self._sample, self._undecoded, self._figures = value, False, None

    @property
    def figures(self) -> SampleFigures:
        """What the fleet table shows of the latest sample (``console/figures.py``): worked
        out once a sample, when first read — or sent by the node's collector worker, so that
        a table of a thousand worker-fed nodes decodes none of their samples."""
        if self._figures is None:
            self._figures = figures_of(self.sample)
        return self._figures

    def hold_line(self, line: bytes, figures: SampleFigures | None) -> None:
        """Take a new sample as its line alone (decoded when read), keeping the one before
        for rates; ``figures``: its table figures, when its sender worked them out."""
        self.previous_line, self.sample_line = self.sample_line, line
        self._sample, self._undecoded, self._figures = None, True, figures

    @property
    def has_sample(self) -> bool:
        """Whether the agent has sent a sample (without decoding it)."""
        return self._undecoded or self._sample is not None


@dataclass(frozen=True, slots=True)
class FleetSummary:
    nodes: int
    by_link: Mapping[LinkState, int]
    by_health: Mapping[Severity, int]
    gpus_total: int
    #: GPUs above ``IN_USE_UTIL_PCT`` on nodes the console hears from now.
    gpus_in_use: int
    #: Mean utilisation of the GPUs on nodes the console hears from now; None when none.
    gpu_util_mean: float | None
    by_site: Mapping[str, int]


class Fleet:
    def __init__(
        self,
        nodes: Sequence[NodeSpec],
        thresholds: HealthThresholds,
        *,
        history_s: float = 600,
        clock: Callable[[], float] = time.monotonic,
        coalesce_s: float = 0.1,
    ) -> None:
        if not (history_s > 0 and math.isfinite(history_s)):
            raise ValueError(f"history_s must be a positive number of seconds, not {history_s!r}")
        if not coalesce_s >= 0:
            raise ValueError(f"coalesce_s must be 0 or more seconds, not {coalesce_s!r}")
        self.thresholds = thresholds
        self.history_s = float(history_s)
        self.coalesce_s = float(coalesce_s)
        self._clock = clock
        self._nodes: dict[str, NodeState] = {}
        self.nodes: Mapping[str, NodeState] = MappingProxyType(self._nodes)
        self._peers = PeerRates()
        self._subscribers: list[Subscriber] = []
        self._dirty: set[str] = set()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        #: Set by a collector whose worker processes derive every node's rates, history and
        #: findings (``console/shard``): this fleet then records what ``take`` hands it and
        #: judges nothing itself (no staleness sweep, no re-evaluation).
        self.derived_elsewhere = False
        for spec in nodes:
            self.add(spec)

    # -- membership --------------------------------------------------------------------------

    def add(self, spec: NodeSpec) -> NodeState:
        """Hold one more node (a cloud node joining); it starts unknown, connecting."""
        if spec.name in self._nodes:
            raise DuplicateNodeError(
                f"node {spec.name!r} is listed twice; node names must be unique"
            )
        now = self._clock()
        state = NodeState(spec=spec, history=NodeHistory(self._capacity(None)), health_since=now)
        self._evaluate(state, now)
        self._nodes[spec.name] = state
        self._mark(spec.name)
        return state

    def remove(self, name: str) -> None:
        """Forget a node (a terminated cloud node). Subscribers see its name once more."""
        self._node(name)
        del self._nodes[name]
        if self._peers.update(name, Counter()):
            self._evaluate_all()
        self._mark(name)

    def _node(self, name: str) -> NodeState:
        try:
            return self._nodes[name]
        except KeyError:
            raise UnknownNodeError(name) from None

    def _capacity(self, interval_s: float | None) -> int:
        interval = max(interval_s or 1.0, 1.0 / MAX_SAMPLES_PER_S)
        return max(2, math.ceil(self.history_s / interval))

    # -- what the collector calls ------------------------------------------------------------

    def on_hello(self, name: str, hello: schema.Hello) -> None:
        """A (re)started agent introduced itself: its facts and its interval."""
        state = self._node(name)
        now = self._clock()
        state.hello = hello
        state.hca_types = hca_types(hello)
        state.expected_gpus = hello.gpu_count
        state.heard_at = now
        state.history.resize(self._capacity(float(hello.interval_s or 1.0)))
        self._update_peers(state)
        self._evaluate(state, now)
        self._mark(name)

    def on_sample(self, name: str, sample: schema.Sample, line: bytes | None = None) -> None:
        """One tick of one node: rates, events, history, then its findings. ``line``: the
        agent's line ``sample`` was decoded from, if the caller has it (the collector)."""
        state = self._node(name)
        now = self._clock()
        previous = state.sample
        state.rates.update(previous, sample)
        observe(state.recent, sample, state.rates, now, self.thresholds)
        self._record_history(state, sample, now)
        state.sample = sample
        state.sample_line = line
        state.sample_at = now
        state.heard_at = now
        state.agent_error = None
        if not same_port_rates(previous, sample):
            self._update_peers(state)
        self._evaluate(state, now)
        self._mark(name)

    def on_link(self, name: str, state: LinkState, error: str | None = None) -> None:
        """The connection to a node's agent changed (connecting, streaming, unreachable…)."""
        node = self._node(name)
        if node.link is state and node.link_error == error:
            return
        now = self._clock()
        if node.link is not state:
            node.events.appendleft(NodeEvent(now, "link", node.link.value, state.value, error))
        node.link = state
        node.link_error = error
        self._evaluate(node, now)
        self._mark(name)

    def on_agent_error(self, name: str, message: str) -> None:
        """A line the collector could not read: shown as agent.error until a good sample."""
        node = self._node(name)
        node.agent_error = message
        self._evaluate(node, self._clock())
        self._mark(name)

    def check_staleness(self) -> None:
        """Call about every second: nodes whose agent fell silent become unknown (agent.stale)."""
        if self.derived_elsewhere:
            return  # the workers' fleets sweep their own nodes
        now = self._clock()
        for node in self._nodes.values():
            if node.heard_at is None or node.link is not LinkState.STREAMING:
                continue
            if is_stale(node, self.thresholds, now) != node.stale:
                self._evaluate(node, now)
                self._mark(node.name)

    def take(self, name: str, digest: NodeDigest) -> bool:
        """Record what a collector worker derived for node ``name`` (``console/shard``).
        True when the fleet's common IB rates moved (the workers must hear of it)."""
        node = self._node(name)
        hello = digest.hello
        if hello is not None:
            node.hello = hello
            node.hca_types = hca_types(hello)
            node.expected_gpus = hello.gpu_count
            node.history.resize(self._capacity(float(hello.interval_s or 1.0)))
        if digest.line is not None:
            node.hold_line(digest.line, digest.figures)
            if digest.rates is not None:
                node.rates.adopt(digest.rates, functools.partial(_samples, node))
        for at, row, gpus in digest.rows:
            node.history.append(at, row, gpus)
        node.events.extendleft(digest.events)  # oldest first: the newest ends leftmost
        node.link, node.link_error = digest.link, digest.link_error
        node.agent_error, node.stale = digest.agent_error, digest.stale
        node.health, node.health_since = digest.health, digest.health_since
        node.findings = digest.findings
        node.heard_at, node.sample_at = digest.heard_at, digest.sample_at
        node.gpu_stats = digest.gpu_stats
        moved = False
        if digest.peer_share is not None:
            node.peer_share = digest.peer_share
            moved = self._peers.update(name, digest.peer_share)
        self._mark(name)
        return moved

    @property
    def peer_context(self) -> PeerContext:
        """The IB rates most ports of each peer group run at, fleet-wide."""
        return self._peers.context

    # -- derived state -----------------------------------------------------------------------

    def _record_history(self, node: NodeState, sample: schema.Sample, now: float) -> None:
        gpu = sample.probes.gpu
        gpus: dict[int, tuple[float | None, ...]] = {}
        mean_util: float | None = None
        listed = in_use = util_n = 0
        util_sum = 0.0
        if gpu is not None and gpu.error is None and gpu.gpus:
            # One pass over the GPUs for their rows, the mean and the summary's counts (every
            # sample of every node).
            listed = len(gpu.gpus)
            for g in gpu.gpus:
                util = g.util_pct
                gpus[g.index] = (util, g.temp_c, g.power_w, g.mem_used_bytes)  # GPU_SERIES order
                if util is not None:
                    util_sum += util
                    util_n += 1
                    in_use += util > IN_USE_UTIL_PCT
            mean_util = util_sum / util_n if util_n else None
        node.gpu_stats = (listed, in_use, util_sum, util_n)
        rates = node.rates
        row = (
            mean_util,
            rates.ib_total("rcv_bytes"),
            rates.ib_total("xmit_bytes"),
            rates.nic_total("rx_bytes"),
            rates.nic_total("tx_bytes"),
        )
        node.history.append(now, row, gpus)
        self._recorded(node, now, row, gpus)

    def _recorded(self, node: NodeState, at: float, row: Row, gpus: Mapping[int, Row]) -> None:
        """A history row was added (a collector worker's fleet sends it on)."""

    def _update_peers(self, node: NodeState) -> None:
        share = port_share(node.sample, node.hca_types)
        if share == node.peer_share:
            return
        node.peer_share = share
        if self._peers.update(node.name, share):
            # The fleet's common IB rate moved: every node's ib.rate_degraded may change.
            self._evaluate_all()

    def _evaluate_all(self) -> None:
        if self.derived_elsewhere:
            return
        now = self._clock()
        for node in self._nodes.values():
            before = node.findings
            self._evaluate(node, now)
            if node.findings != before:
                self._mark(node.name)

    def _evaluate(self, node: NodeState, now: float) -> None:
        findings = evaluate(node, self._peers.context, self.thresholds, now)
        health = node_health(node, findings, self.thresholds, now)
        node.findings = findings
        node.stale = is_stale(node, self.thresholds, now)
        if health is not node.health:
            detail = findings[0].message if findings else None
            node.events.appendleft(NodeEvent(now, "health", node.health.word, health.word, detail))
            node.health = health
            node.health_since = now

    def summary(self) -> FleetSummary:
        """Counts for a header line: links, health, GPUs in use, nodes by site."""
        now = self._clock()
        by_link: Counter[LinkState] = Counter()
        by_health: Counter[Severity] = Counter()
        by_site: Counter[str] = Counter()
        total = in_use = 0
        util_sum, util_n = 0.0, 0
        for node in self._nodes.values():
            by_link[node.link] += 1
            by_health[node.health] += 1
            by_site[node.spec.site] += 1
            listed, busy, node_util_sum, node_util_n = node.gpu_stats
            total += max(node.expected_gpus or 0, listed)
            if not can_hear(node, self.thresholds, now):
                continue
            in_use += busy
            util_sum += node_util_sum
            util_n += node_util_n
        return FleetSummary(
            nodes=len(self._nodes),
            by_link=dict(by_link),
            by_health=dict(by_health),
            gpus_total=total,
            gpus_in_use=in_use,
            gpu_util_mean=util_sum / util_n if util_n else None,
            by_site=dict(by_site),
        )

    def now(self) -> float:
        """The fleet's clock: what ``sample_at``, event times and ages are measured against."""
        return self._clock()

    def interval_of(self, name: str) -> float:
        """Seconds between a node's samples, as its agent's hello said (1 before a hello)."""
        return agent_interval(self._node(name))

    # -- change notifications ----------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(changed_names)`` after each flush; returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _mark(self, name: str) -> None:
        self._dirty.add(name)
        # asyncio's non-raising get_running_loop (exported for event loop libraries): the
        # raising one would cost an exception per sample where no loop runs (scripts, tests).
        loop = asyncio._get_running_loop()
        if loop is None:
            return  # no loop: whoever drives the fleet calls flush()
        if self._flush_handle is not None and self._flush_loop is loop:
            return
        self._flush_loop = loop
        self._flush_handle = loop.call_later(self.coalesce_s, self.flush)

    def flush(self) -> frozenset[str]:
        """Hand the nodes changed since the last flush to every subscriber; returns them."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
            self._flush_loop = None
        if not self._dirty:
            return frozenset()
        changed = frozenset(self._dirty)
        self._dirty.clear()
        for callback in tuple(self._subscribers):
            try:
                callback(changed)
            except Exception:
                log.exception("fleet subscriber %r failed; it stays subscribed", callback)
        return changed


def _samples(node: NodeState) -> tuple[schema.Sample | None, schema.Sample] | None:
    """A worker-fed node's previous and latest samples, decoded (for its per-port rates)."""
    sample = node.sample
    if sample is None:
        return None
    before = node.previous_line
    return (SAMPLE_DECODER.decode(before) if before is not None else None), sample
