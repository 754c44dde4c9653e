"""Health rules: a node's latest sample (and what it recently did) → findings → its health.

Each rule is one small function, registered under the stable code it reports
(``gpu.xid``, ``ib.port_down``…). ``docs/health.md`` documents every code, its severity,
trigger, threshold and sentence; a test keeps the two in step. A node's health is its worst
finding, ``ok`` with none — except that a node the console cannot hear from now (no sample
yet, link not streaming, agent stale) is ``unknown`` whatever its last sample said: its
last-known findings stay listed after the reason, as the best clue to what happened.

Events that agents report once (an XID in one sample, a ``link_downed`` increment) are
remembered in ``Recent`` and held for a configured time, so an operator who looks a minute
later still sees them. Error counters are judged on their smoothed rates (``rates.py``), so
one stray error is not "3,600 an hour".

Every rule but ``gpu.missing`` also has a **quiet test** (``QUIET``), shared by the rules that
read the same things: when it finds nothing for them to judge — the common case, a healthy
node — ``evaluate`` does not run them. That is what makes judging a thousand nodes a second
cheap; what the rules report is the same either way (see "quiet tests" below).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tidectl.console.model import Finding, LinkState, Severity
from tidectl.console.rates import NodeRates
from tidectl.console.schema import Gpu, Hello, IbPort, Sample
from tidectl.console.thresholds import HealthThresholds

if TYPE_CHECKING:
    from tidectl.console.fleet import NodeState

#: What the well-known XIDs mean (NVIDIA's XID catalogue), for the sentence of gpu.xid.
XID_MEANINGS: dict[int, str] = {
    8: "GPU stopped processing",
    13: "graphics engine exception, usually the application's fault",
    31: "GPU memory page fault, usually the application's fault",
    32: "invalid or corrupted push buffer stream",
    38: "driver firmware error",
    43: "GPU stopped processing, usually the application's fault",
    45: "preemptive cleanup after earlier errors",
    48: "double-bit ECC error",
    61: "internal micro-controller breakpoint",
    62: "internal micro-controller halt",
    63: "ECC page retirement or row remapping event",
    64: "ECC page retirement or row remapping failure",
    68: "video processor exception",
    69: "graphics engine class error",
    74: "NVLink error",
    79: "GPU has fallen off the bus",
    92: "high single-bit ECC error rate",
    94: "contained ECC error",
    95: "uncontained ECC error",
    119: "GSP RPC timeout",
    120: "GSP error",
    121: "C2C link error",
}
#: What a port's physical state tells the operator to check (IB spec PortPhysicalState).
_PHYS_HINTS: dict[int, str] = {
    1: "the port is asleep",
    2: "no link partner: a cable unplugged, or the switch port down",
    3: "the port is disabled",
    4: "the link is training",
    6: "the link is recovering from errors",
    7: "the link is in test mode",
}
#: The IB port state number for ACTIVE.
IB_ACTIVE = 4
#: How many XIDs a node remembers at most (a storm of XID 13 must not grow memory).
MAX_RECENT_XIDS = 64
#: The agent interval assumed before a hello says otherwise.
DEFAULT_INTERVAL_S = 1.0


# --- what a node did recently ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeenXid:
    gpu: int
    code: int
    at: float  # the fleet's clock when it happened (estimated from the agent's timestamps)


@dataclass(frozen=True, slots=True)
class SeenLinkDown:
    port: str
    at: float  # the fleet's clock when the sample showing the increment arrived
    times: int  # how many times the link went down while this finding was held
    count: int  # the counter's value after


@dataclass(slots=True)
class Recent:
    """One-shot events of one node, kept for their hold time."""

    xids: list[SeenXid] = field(default_factory=list)
    link_downs: dict[str, SeenLinkDown] = field(default_factory=dict)


def observe(
    recent: Recent,
    sample: Sample,
    rates: NodeRates,
    received_at: float,
    thresholds: HealthThresholds,
) -> None:
    """Remember the events in ``sample`` (rates already updated with it); forget expired ones."""
    gpu = sample.probes.gpu
    if gpu is not None:
        for item in gpu.gpus:
            for xid in item.xid or ():
                # The driver logged it at xid.ts; the sample was taken at sample.ts and
                # arrived at received_at. Place it on our clock, never in the future.
                lag = sample.ts - xid.ts if xid.ts is not None else 0.0
                at = received_at - min(max(lag, 0.0), thresholds.xid_hold_s)
                recent.xids.append(SeenXid(item.index, xid.code, at))
    if recent.xids:
        oldest = received_at - thresholds.xid_hold_s
        recent.xids = [x for x in recent.xids if x.at >= oldest][-MAX_RECENT_XIDS:]
    if recent.link_downs:
        oldest = received_at - thresholds.ib_link_downed_hold_s
        for key in [k for k, seen in recent.link_downs.items() if seen.at < oldest]:
            del recent.link_downs[key]
    dt = rates.dt
    ib = sample.probes.ib
    if rates.ib_counted and ib is not None and dt is not None:  # the counters that rose
        for port in ib.ports:
            rate = rates.ib_counted.get(port.key, {}).get("link_downed")
            count = port.counters.link_downed
            if rate and count is not None:
                # A flapping link adds up while its finding is held.
                held = recent.link_downs.get(port.key)
                times = max(1, round(rate * dt)) + (held.times if held is not None else 0)
                recent.link_downs[port.key] = SeenLinkDown(port.key, received_at, times, count)


# --- what the rest of the fleet looks like -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeerRate:
    """The most common rate of one group of peer ports (same link layer and HCA model)."""

    gbps: float
    label: str  # as sysfs says it: "400 Gb/sec (4X NDR)"
    ports: int  # ports at this rate
    of: int  # ports in the group


@dataclass(frozen=True, slots=True)
class PeerContext:
    """Fleet-wide facts a rule compares a node with.

    ``ib_rates``: per peer group (``ib_group(link_layer, hca_type)``), the rate most of its
    active ports run at. Peers are grouped by HCA model too, so a fleet that mixes HDR and
    NDR adapters on purpose does not flag the HDR ones.
    """

    ib_rates: Mapping[tuple[str, str], PeerRate] = field(default_factory=dict)


def ib_group(link_layer: str | None, hca_type: str | None) -> tuple[str, str]:
    return (link_layer or "unknown", hca_type or "")


def hca_types(hello: Hello | None) -> dict[str, str]:
    """HCA name → model (``MT4129``) from a hello's facts; {} when it has none."""
    if hello is None:
        return {}
    ib = hello.facts.get("ib")
    hcas = ib.get("hcas") if isinstance(ib, dict) else None
    if not isinstance(hcas, list):
        return {}
    return {
        str(hca["name"]): str(hca.get("hca_type") or "")
        for hca in hcas
        if isinstance(hca, dict) and "name" in hca
    }


PortShare = Counter[tuple[tuple[str, str], float, str]]
"""One node's active ports by (peer group, rate in Gb/s, rate label)."""


def port_share(sample: Sample | None, types: Mapping[str, str]) -> PortShare:
    """What one node adds to the fleet's port rates; ``types`` is ``hca_types(its hello)``."""
    share: PortShare = Counter()
    ib = sample.probes.ib if sample is not None else None
    if ib is None or ib.error is not None:
        return share
    for port in ib.ports:
        if port.state != IB_ACTIVE or port.rate_gbps is None:
            continue
        group = ib_group(port.link_layer, types.get(port.hca))
        share[group, float(port.rate_gbps), port.rate or f"{port.rate_gbps:g} Gb/sec"] += 1
    return share


def same_port_rates(before: Sample | None, after: Sample) -> bool:
    """Whether two samples show the same ports in the same states at the same rates.

    The common case by far; checked without allocating, so that a node's share of the
    fleet's port rates is rebuilt only when something changed.
    """
    old = before.probes.ib if before is not None else None
    new = after.probes.ib
    if old is None or new is None or old.error is not None or new.error is not None:
        return old is None and new is None
    if len(old.ports) != len(new.ports):
        return False
    for a, b in zip(old.ports, new.ports, strict=True):
        if (
            a.state != b.state
            or a.rate_gbps != b.rate_gbps
            or a.hca != b.hca
            or a.port != b.port
            or a.link_layer != b.link_layer
        ):
            return False
    return True


class PeerRates:
    """The fleet's IB port rates, kept up to date one node at a time (O(ports) a sample)."""

    def __init__(self) -> None:
        self._counts: PortShare = Counter()
        self._shares: dict[str, PortShare] = {}
        self.context = PeerContext()

    def update(self, name: str, share: PortShare) -> bool:
        """Replace one node's ports; True when a group's common rate changed.

        Only a changed rate says "re-evaluate every node"; the port counts in the context
        move with every node that joins, and reach each node's sentence at its next sample.
        """
        old = self._shares.get(name)
        if old == share:
            return False
        if old:
            self._counts.subtract(old)
            self._counts = +self._counts  # drop rates no port runs at any more
        if share:
            self._counts.update(share)
            self._shares[name] = share
        else:
            self._shares.pop(name, None)
        context = PeerContext(self._common())
        changed = _rates_of(context) != _rates_of(self.context)
        self.context = context
        return changed

    def _common(self) -> dict[tuple[str, str], PeerRate]:
        totals: Counter[tuple[str, str]] = Counter()
        best: dict[tuple[str, str], tuple[int, float, str]] = {}
        for (group, gbps, label), n in self._counts.items():
            if n <= 0:
                continue
            totals[group] += n
            # Most ports wins; a tie goes to the faster rate (the slower is the odd one out).
            if (n, gbps) > best.get(group, (0, 0.0, ""))[:2]:
                best[group] = (n, gbps, label)
        return {
            group: PeerRate(gbps, label, n, totals[group])
            for group, (n, gbps, label) in best.items()
        }


def _rates_of(context: PeerContext) -> dict[tuple[str, str], float]:
    return {group: rate.gbps for group, rate in context.ib_rates.items()}


# --- the rules -------------------------------------------------------------------------------

Rule = Callable[["NodeState", PeerContext, HealthThresholds, float], Iterable[Finding]]
Quiet = Callable[["NodeState", PeerContext, HealthThresholds, float], bool]
RULES: dict[str, Rule] = {}
#: Per code, a cheap test that its rule has nothing to report now (see ``evaluate``).
QUIET: dict[str, Quiet] = {}


def _rule(code: str, quiet: Quiet | None = None) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        RULES[code] = fn
        if quiet is not None:
            QUIET[code] = quiet
        return fn

    return register


# --- quiet tests -------------------------------------------------------------------------------
#
# Nearly every sample of nearly every node is healthy, and 19 rules for each of a thousand
# samples a second were most of the console's cost. A quiet test reads only what its rules
# read and answers "nothing there" cheaply, once for a group of rules: no event held, no error
# average, no GPU, port or mount near anything its rules report, the agent streaming cleanly.
# It is a necessary condition of each of its rules reporting anything, never a judgement of
# its own: when it is not sure, the rules run and decide. ``tests/console/test_health.py``
# checks that skipping never hides a finding, rule by rule and on random records.


def _nothing_held(node: NodeState, peers: PeerContext, th: HealthThresholds, now: float) -> bool:
    """No event held and no error average: what the rules of one-shot events and of
    smoothed error rates iterate over is empty."""
    recent, rates = node.recent, node.rates
    return not (
        recent.xids or recent.link_downs or rates.gpu_ecc_sbe or rates.ib_errors or rates.nic_errors
    )


def _gpus_unremarkable(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> bool:
    """No GPU near what ``gpu.ecc_dbe``, ``gpu.remapped_rows``, ``gpu.temp``, ``gpu.power``
    or ``gpu.nvlink`` report: one pass over the GPUs instead of one per rule."""
    if node.rates.gpu_ecc_dbe:
        return False
    warm = min(th.gpu_temp_warn_c, th.gpu_temp_critical_c)
    over = th.gpu_power_warn_fraction
    for gpu in _gpus(node):
        temp, power, limit, link = gpu.temp_c, gpu.power_w, gpu.power_limit_w, gpu.nvlink
        if (
            gpu.ecc_dbe_volatile
            or gpu.remapped_rows_failure
            or gpu.remapped_rows_uncorrectable
            or gpu.remapped_rows_pending
            or (temp is not None and temp >= warm)
            or (power is not None and limit and power > limit * over)
            or (link is not None and link.up < link.total)
        ):
            return False
    return True


def _ports_unremarkable(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> bool:
    """Every port active (``ib.port_down``), none below its peer group's common rate
    (``ib.rate_degraded``; read from the node's share of the fleet's port rates, kept by the
    fleet: one entry per group and rate, not one per port)."""
    for port in _ports(node):
        if port.state is not None and port.state != IB_ACTIVE:
            return False
    common = peers.ib_rates
    for group, gbps, _label in node.peer_share:
        rate = common.get(group)
        if rate is not None and gbps < rate.gbps:
            return False
    return True


def _mounts_unremarkable(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> bool:
    """No mount stale nor as full as ``storage.full`` reports (with the rule's arithmetic)."""
    storage = node.sample.probes.storage if node.sample is not None else None
    if storage is None or storage.error is not None:
        return True
    full_pct = min(th.storage_full_warn_pct, th.storage_full_critical_pct)
    for mount in storage.mounts:
        if mount.stale:
            return False
        used, avail = mount.used_bytes, mount.avail_bytes  # as Mount.used_fraction computes
        if (
            used is not None
            and avail is not None
            and used + avail > 0
            and used / (used + avail) * 100.0 >= full_pct
        ):
            return False
        inodes, inodes_total = mount.inodes_used, mount.inodes_total
        if inodes is not None and inodes_total and inodes / inodes_total * 100.0 >= full_pct:
            return False
    return True


def _agent_unremarkable(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> bool:
    """Streaming, not stale (``agent.stale``, ``agent.link``), no unreadable line, failed
    probe nor fault file error (``agent.error``)."""
    sample = node.sample
    if (
        sample is None
        or node.link is not LinkState.STREAMING
        or node.agent_error is not None
        or is_stale(node, th, now)
    ):
        return False
    probes = sample.probes
    for section in (probes.host, probes.gpu, probes.ib, probes.storage, probes.net):
        if section is not None and section.error is not None:
            return False
    return probes.host is None or not probes.host.fault_errors


def _num(value: float) -> str:
    """1234.5 → "1,234"; 0.25 → "0.25": whole numbers for people, decimals when small."""
    if abs(value) >= 10:
        return f"{value:,.0f}"
    return f"{value:.2g}" if value else "0"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _ago(seconds: float) -> str:
    return f"{_duration(seconds)} ago"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _xid_text(code: int) -> str:
    meaning = XID_MEANINGS.get(code)
    return f"XID {code} ({meaning})" if meaning else f"XID {code}"


@_rule("gpu.xid", quiet=_nothing_held)
def gpu_xid(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    latest: dict[tuple[int, int], SeenXid] = {}
    times: Counter[tuple[int, int]] = Counter()
    for seen in node.recent.xids:
        if seen.code in th.xid_ignored_codes or now - seen.at > th.xid_hold_s:
            continue
        key = (seen.gpu, seen.code)
        times[key] += 1
        if key not in latest or seen.at > latest[key].at:
            latest[key] = seen
    for (gpu, code), seen in sorted(latest.items()):
        severity = Severity.CRITICAL if code in th.xid_critical_codes else Severity.WARN
        n = times[gpu, code]
        again = f" ({n} times in the last {_duration(th.xid_hold_s)})" if n > 1 else ""
        yield Finding(
            "gpu.xid",
            severity,
            f"GPU {gpu} reported {_xid_text(code)} {_ago(now - seen.at)}{again}.",
            f"gpu{gpu}",
        )


@_rule("gpu.ecc_dbe", quiet=_gpus_unremarkable)
def gpu_ecc_dbe(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    for gpu in _gpus(node):
        volatile = gpu.ecc_dbe_volatile or 0
        rising = node.rates.gpu_ecc_dbe.get(gpu.index, 0.0) > 0
        if volatile > 0 or rising:
            what = "uncorrectable (double-bit) ECC error"
            count = (
                f"{_plural(volatile, what)} since the driver loaded"
                if volatile > 0
                else f"new {what}s (lifetime {gpu.ecc_dbe_aggregate})"
            )
            yield Finding(
                "gpu.ecc_dbe",
                Severity.CRITICAL,
                f"GPU {gpu.index} has {count}: its jobs may have read corrupt memory; "
                "drain the node and reset the GPU.",
                f"gpu{gpu.index}",
            )


@_rule("gpu.ecc_sbe_rate", quiet=_nothing_held)
def gpu_ecc_sbe_rate(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    for index, per_s in sorted(node.rates.gpu_ecc_sbe.items()):
        per_hour = per_s * 3600.0
        if per_hour >= th.gpu_ecc_sbe_warn_per_hour:
            yield Finding(
                "gpu.ecc_sbe_rate",
                Severity.WARN,
                f"GPU {index} is correcting {_num(per_hour)} single-bit ECC errors an hour "
                f"(warn at {_num(th.gpu_ecc_sbe_warn_per_hour)}): its memory is degrading; "
                "plan to replace it.",
                f"gpu{index}",
            )


@_rule("gpu.remapped_rows", quiet=_gpus_unremarkable)
def gpu_remapped_rows(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    for gpu in _gpus(node):
        if gpu.remapped_rows_failure:
            yield Finding(
                "gpu.remapped_rows",
                Severity.CRITICAL,
                f"GPU {gpu.index} failed to remap a row: it has no spare rows left; "
                "drain the node and replace the GPU.",
                f"gpu{gpu.index}",
            )
            continue
        parts = []
        uncorrectable = gpu.remapped_rows_uncorrectable or 0
        if uncorrectable > 0:
            parts.append(f"{_plural(uncorrectable, 'row')} remapped after uncorrectable errors")
        if gpu.remapped_rows_pending:
            parts.append("a remapping pending: reset the GPU (drain the node first) to apply it")
        if parts:
            yield Finding(
                "gpu.remapped_rows",
                Severity.WARN,
                f"GPU {gpu.index} has {', and '.join(parts)}.",
                f"gpu{gpu.index}",
            )


@_rule("gpu.temp", quiet=_gpus_unremarkable)
def gpu_temp(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    for gpu in _gpus(node):
        temp = gpu.temp_c
        if temp is None:
            continue
        if temp >= th.gpu_temp_critical_c:
            severity, limit = Severity.CRITICAL, th.gpu_temp_critical_c
        elif temp >= th.gpu_temp_warn_c:
            severity, limit = Severity.WARN, th.gpu_temp_warn_c
        else:
            continue
        yield Finding(
            "gpu.temp",
            severity,
            f"GPU {gpu.index} is at {temp:.0f} °C ({severity.word} at {limit:.0f} °C): it "
            "throttles its clocks; check the node's fans and airflow.",
            f"gpu{gpu.index}",
        )


@_rule("gpu.power", quiet=_gpus_unremarkable)
def gpu_power(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    for gpu in _gpus(node):
        power, limit = gpu.power_w, gpu.power_limit_w
        if power is None or not limit:
            continue
        if power > limit * th.gpu_power_warn_fraction:
            yield Finding(
                "gpu.power",
                Severity.WARN,
                f"GPU {gpu.index} draws {power:.0f} W, over its {limit:.0f} W limit "
                f"(warn above {th.gpu_power_warn_fraction:.0%}): its power telemetry or "
                "power capping is wrong; check it with nvidia-smi -q -d POWER.",
                f"gpu{gpu.index}",
            )


@_rule("gpu.missing")
def gpu_missing(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    section = node.sample.probes.gpu if node.sample is not None else None
    expected = node.expected_gpus
    if section is None or section.error is not None or not expected:
        return
    present = {gpu.index for gpu in section.gpus}
    if len(present) >= expected:
        return
    missing = [i for i in _hello_gpu_indices(node.hello) if i not in present]
    which = ", ".join(f"GPU {i}" for i in missing) if missing else "some GPUs"
    why = (
        f"the driver is gone ({section.no_driver})"
        if section.no_driver
        else "the driver no longer sees them (fallen off the bus, or lost power)"
    )
    yield Finding(
        "gpu.missing",
        Severity.CRITICAL,
        f"{expected - len(present)} of {expected} GPUs missing ({which}): {why}; "
        "drain the node and check its GPUs.",
        ",".join(f"gpu{i}" for i in missing) or None,
    )


@_rule("gpu.nvlink", quiet=_gpus_unremarkable)
def gpu_nvlink(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    for gpu in _gpus(node):
        link = gpu.nvlink
        if link is not None and link.total > 0 and link.up < link.total:
            yield Finding(
                "gpu.nvlink",
                Severity.WARN,
                f"GPU {gpu.index} has {link.up} of {link.total} NVLinks up: GPU-to-GPU "
                "traffic falls back to slower paths; reset the GPU or check the NVSwitch.",
                f"gpu{gpu.index}",
            )


@_rule("ib.port_down", quiet=_ports_unremarkable)
def ib_port_down(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    for port in _ports(node):
        if port.state is None or port.state == IB_ACTIVE:
            continue
        state = port.state_name or f"state {port.state}"
        phys = port.phys_state_name or (
            f"physical state {port.phys_state}" if port.phys_state is not None else None
        )
        hint = _PHYS_HINTS.get(port.phys_state or 0)
        detail = f" (physical state {phys})" if phys else ""
        yield Finding(
            "ib.port_down",
            Severity.CRITICAL,
            f"{port.key} is {state}{detail}"
            + (f": {hint}." if hint else ".")
            + " Jobs using it fail or slow down.",
            port.key,
        )


@_rule("ib.rate_degraded", quiet=_ports_unremarkable)
def ib_rate_degraded(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    ports = [p for p in _ports(node) if p.state == IB_ACTIVE and p.rate_gbps is not None]
    if not ports or not peers.ib_rates:
        return
    types = node.hca_types
    for port in ports:
        group = ib_group(port.link_layer, types.get(port.hca))
        common = peers.ib_rates.get(group)
        if common is None or port.rate_gbps is None or port.rate_gbps >= common.gbps:
            continue
        yield Finding(
            "ib.rate_degraded",
            Severity.WARN,
            f"{port.key} runs at {port.rate or f'{port.rate_gbps:g} Gb/sec'}, below the "
            f"{common.label} of {common.ports} of {common.of} peer ports: a bad cable or "
            "transceiver, or a port that trained down; reseat or replace it.",
            port.key,
        )


def _ib_error_rule(
    code: str, counter: str, what: str, advice: str
) -> Callable[[NodeState, PeerContext, HealthThresholds, float], Iterator[Finding]]:
    def rule(
        node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
    ) -> Iterator[Finding]:
        warn, critical = _ib_limits(code, th)
        for key, smoothed in sorted(node.rates.ib_errors.items()):
            per_min = smoothed.get(counter, 0.0) * 60.0
            if critical is not None and per_min >= critical:
                severity, limit = Severity.CRITICAL, critical
            elif per_min >= warn:
                severity, limit = Severity.WARN, warn
            else:
                continue
            yield Finding(
                code,
                severity,
                f"{key} logs {_num(per_min)} {what} a minute ({severity.word} at "
                f"{_num(limit)}): {advice}",
                key,
            )

    return rule


def _ib_limits(code: str, th: HealthThresholds) -> tuple[float, float | None]:
    if code == "ib.symbol_errors":
        return th.ib_symbol_errors_warn_per_min, th.ib_symbol_errors_critical_per_min
    return th.ib_rcv_errors_warn_per_min, None


QUIET["ib.symbol_errors"] = QUIET["ib.rcv_errors"] = _nothing_held
RULES["ib.symbol_errors"] = _ib_error_rule(
    "ib.symbol_errors",
    "symbol_error",
    "symbol errors",
    "a bad cable or transceiver; reseat or replace it.",
)
RULES["ib.rcv_errors"] = _ib_error_rule(
    "ib.rcv_errors",
    "port_rcv_errors",
    "receive errors (malformed packets)",
    "check the cable and the switch port at the far end.",
)


@_rule("ib.link_downed", quiet=_nothing_held)
def ib_link_downed(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    for key, seen in sorted(node.recent.link_downs.items()):
        if now - seen.at > th.ib_link_downed_hold_s:
            continue
        when = (
            _ago(now - seen.at)
            if seen.times == 1
            else f"in the last {_duration(th.ib_link_downed_hold_s)}, last {_ago(now - seen.at)}"
        )
        yield Finding(
            "ib.link_downed",
            Severity.WARN,
            f"{key} link went down {_plural(seen.times, 'time')} {when} "
            f"(link_downed now {seen.count}): a flapping link; check the cable and switch port.",
            key,
        )


@_rule("storage.full", quiet=_mounts_unremarkable)
def storage_full(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    storage = node.sample.probes.storage if node.sample is not None else None
    if storage is None or storage.error is not None:
        return
    for mount in storage.mounts:
        if mount.stale:
            continue
        space = mount.used_fraction
        inodes = (
            mount.inodes_used / mount.inodes_total
            if mount.inodes_used is not None and mount.inodes_total
            else None
        )
        for fraction, what in ((space, "space"), (inodes, "inodes")):
            if fraction is None:
                continue
            pct = fraction * 100.0
            if pct >= th.storage_full_critical_pct:
                severity, limit = Severity.CRITICAL, th.storage_full_critical_pct
            elif pct >= th.storage_full_warn_pct:
                severity, limit = Severity.WARN, th.storage_full_warn_pct
            else:
                continue
            yield Finding(
                "storage.full",
                severity,
                f"{mount.mountpoint} has used {pct:.1f} % of its {what} ({severity.word} at "
                f"{limit:g} %): jobs writing there will fail; clean it up.",
                mount.mountpoint,
            )
            break  # one finding a mount: space first, it is what people look at


@_rule("storage.stale_mount", quiet=_mounts_unremarkable)
def storage_stale_mount(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    storage = node.sample.probes.storage if node.sample is not None else None
    if storage is None or storage.error is not None:
        return
    for mount in storage.mounts:
        if mount.stale:
            kind = f" ({mount.fstype})" if mount.fstype else ""
            why = f": {mount.error}" if mount.error else ""
            yield Finding(
                "storage.stale_mount",
                Severity.CRITICAL,
                f"{mount.mountpoint}{kind} does not answer{why}. Processes touching it hang; "
                "check its server, then remount it.",
                mount.mountpoint,
            )


@_rule("net.errors", quiet=_nothing_held)
def net_errors(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    for name, smoothed in sorted(node.rates.nic_errors.items()):
        per_min = (smoothed.get("rx_errors", 0.0) + smoothed.get("tx_errors", 0.0)) * 60.0
        if per_min >= th.net_errors_warn_per_min:
            yield Finding(
                "net.errors",
                Severity.WARN,
                f"{name} logs {_num(per_min)} errors a minute (warn at "
                f"{_num(th.net_errors_warn_per_min)}): check its cable, optics and switch port.",
                name,
            )


@_rule("agent.stale", quiet=_agent_unremarkable)
def agent_stale(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    if node.link is LinkState.STALE or (
        node.link is LinkState.STREAMING and is_stale(node, th, now)
    ):
        interval = agent_interval(node)
        last = (
            f"; last sample at {time.strftime('%H:%M:%S', time.localtime(node.sample.ts))}"
            if node.sample is not None
            else ""
        )
        yield Finding(
            "agent.stale",
            Severity.UNKNOWN,
            f"No sample from the agent for more than {_num(th.stale_after_intervals * interval)} "
            f"s ({th.stale_after_intervals:g} times its {interval:g} s interval){last}: the node "
            "may be overloaded or hung.",
        )


@_rule("agent.link", quiet=_agent_unremarkable)
def agent_link(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    if node.link not in (LinkState.STREAMING, LinkState.STALE):
        yield _link_finding(node.link, node.link_error)


@functools.lru_cache(maxsize=4096)
def _link_finding(link: LinkState, error: str | None) -> Finding:
    # Judged again for every sample of a node that is not streaming (the link changes far
    # less often than that): one finding per link state and error, shared (findings are
    # immutable).
    why = f": {error}" if error else ""
    return Finding(
        "agent.link",
        Severity.UNKNOWN,
        f"The console is not streaming from this node's agent ({link.value}){why}.",
    )


@_rule("agent.error", quiet=_agent_unremarkable)
def agent_error(
    node: NodeState, peers: PeerContext, th: HealthThresholds, now: float
) -> Iterator[Finding]:
    if node.agent_error is not None:
        yield Finding("agent.error", Severity.WARN, node.agent_error, "agent")
    if node.sample is None:
        return
    probes = node.sample.probes
    for name in ("host", "gpu", "ib", "storage", "net"):
        section = getattr(probes, name)
        if section is None or section.error is None:
            continue
        what = "did not finish in time" if section.timed_out else "failed"
        yield Finding(
            "agent.error",
            Severity.WARN,
            f"The {name} probe {what}: {section.error}",
            name,
        )
    host = probes.host
    if host is not None and host.fault_errors:
        first = host.fault_errors[0]
        more = f" (and {len(host.fault_errors) - 1} more)" if len(host.fault_errors) > 1 else ""
        yield Finding(
            "agent.error",
            Severity.WARN,
            f"The simulated node's fault file has errors: {first}{more}",
            "faults",
        )


CODES: tuple[str, ...] = tuple(RULES)
"""Every code the rules report, in rule order (docs/health.md documents each one)."""

#: Codes that mean the console cannot hear the node now.
SILENT_CODES = frozenset({"agent.stale", "agent.link"})


# --- helpers and the entry points ------------------------------------------------------------


def _gpus(node: NodeState) -> list[Gpu]:
    section = node.sample.probes.gpu if node.sample is not None else None
    return section.gpus if section is not None and section.error is None else []


def _ports(node: NodeState) -> list[IbPort]:
    section = node.sample.probes.ib if node.sample is not None else None
    return section.ports if section is not None and section.error is None else []


def _hello_gpu_indices(hello: Hello | None) -> list[int]:
    gpu = hello.facts.get("gpu") if hello is not None else None
    gpus = gpu.get("gpus") if isinstance(gpu, dict) else None
    if not isinstance(gpus, list):
        return []
    return sorted(
        item["index"]
        for item in gpus
        if isinstance(item, dict) and isinstance(item.get("index"), int)
    )


def agent_interval(node: NodeState) -> float:
    """Seconds between samples, as the agent's hello said."""
    interval = node.hello.interval_s if node.hello is not None else None
    return float(interval) if interval else DEFAULT_INTERVAL_S


def is_stale(node: NodeState, th: HealthThresholds, now: float) -> bool:
    """Whether the agent has been silent for ``stale_after_intervals`` of its intervals."""
    if node.heard_at is None:
        return False
    return now - node.heard_at > th.stale_after_intervals * agent_interval(node)


def can_hear(node: NodeState, th: HealthThresholds, now: float) -> bool:
    """Whether the node's latest sample describes it now."""
    return node.has_sample and node.link is LinkState.STREAMING and not is_stale(node, th, now)


def _plan() -> tuple[tuple[Quiet | None, tuple[tuple[str, Rule], ...]], ...]:
    """The rules grouped by quiet test, so that a test shared by several rules runs once."""
    groups: dict[Quiet | None, list[tuple[str, Rule]]] = {}
    for code, rule in RULES.items():
        groups.setdefault(QUIET.get(code), []).append((code, rule))
    return tuple((quiet, tuple(rules)) for quiet, rules in groups.items())


_PLAN = _plan()


def _worst_first(finding: Finding) -> tuple[bool, int, str, str]:
    return (
        finding.code not in SILENT_CODES,
        -finding.severity,
        finding.code,
        finding.subject or "",
    )


def evaluate(
    node: NodeState,
    peers: PeerContext,
    thresholds: HealthThresholds,
    now: float,
    *,
    skip_quiet: bool = True,
) -> list[Finding]:
    """Every finding of every rule for one node, worst first; muted codes left out.

    Rules whose quiet test says they have nothing to judge are not run (``skip_quiet=False``
    runs every rule: the tests compare the two).
    """
    muted = thresholds.muted_codes
    findings: list[Finding] = []
    for quiet, rules in _PLAN:
        if skip_quiet and quiet is not None and quiet(node, peers, thresholds, now):
            continue
        for code, rule in rules:
            if code not in muted:
                findings.extend(rule(node, peers, thresholds, now))
    if len(findings) > 1:
        findings.sort(key=_worst_first)
    return findings


def node_health(
    node: NodeState, findings: Iterable[Finding], thresholds: HealthThresholds, now: float
) -> Severity:
    """The worst finding, OK with none; UNKNOWN for a node the console cannot hear now."""
    if not can_hear(node, thresholds, now):
        return Severity.UNKNOWN
    return max((f.severity for f in findings), default=Severity.OK)
