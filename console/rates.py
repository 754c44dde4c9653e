"""Counters → per-second rates, from two consecutive samples of one node.

Agents report counters raw (bytes, packets, errors since boot or since the counter was
cleared); the console turns them into rates here. The rules, in order:

* The time between two readings is the difference of the samples' ``mono`` (the node's own
  monotonic clock; ``ts`` when an agent has no ``mono``). Not the console's receive time: lines
  queue in SSH buffers and arrive in bursts, which would turn steady traffic into spikes.
* No rate across a step that went back in time or forward by more than ``MAX_GAP_S``: a rate
  averaged over a long silence says little about now, and a node that rebooted has a new clock.
* A counter that went **down** was reset (agent or driver restarted, ``perfquery -R``,
  a node reboot): no rate for that step — never a negative rate, never a spike. It is read as a
  **wrap** only when the previous value was in the top ``1/WRAP_WINDOW`` of a 32- or 64-bit
  range and the new one in the bottom ``1/WRAP_WINDOW``: kernels wrap their counters there.
* InfiniBand PMA counters do not wrap, they **saturate** at their width's all-ones value
  (16 bits for ``symbol_error``, 8 for ``link_downed``, 32 for data counters of a port without
  extended counters): a saturated counter says nothing about the rate, so it has none.

Error counters also get a **smoothed** rate, an exponential moving average over about a
minute (``ERROR_TAU_S``; ``ECC_TAU_S`` for corrected ECC errors, whose threshold is per
hour). A single error in a one-second step is "3,600 an hour" as an instantaneous rate; the
average makes one error one error, and a steady stream converge to its true rate. It costs one
float per counter, whatever the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TypeVar

from tidectl.console.schema import GpuSample, IbPort, IbSample, NetSample, Sample, StorageSample

#: Longest step, in seconds, across which a rate is still computed.
MAX_GAP_S = 300.0
#: A drop counts as a wrap only from the top 1/16 of the range to its bottom 1/16.
WRAP_WINDOW = 16
_WRAP_LIMITS = (1 << 32, 1 << 64)
#: Time constant of the smoothed error rates, in seconds.
ERROR_TAU_S = 60.0
ECC_TAU_S = 300.0

#: The PMA error counters of an InfiniBand port, with their width in bits
#: (``drivers/infiniband/core/sysfs.c``): they saturate at 2**width - 1.
IB_ERROR_COUNTER_BITS: dict[str, int] = {
    "symbol_error": 16,
    "link_error_recovery": 8,
    "link_downed": 8,
    "port_rcv_errors": 16,
    "port_rcv_remote_physical_errors": 16,
    "port_rcv_switch_relay_errors": 16,
    "port_xmit_discards": 16,
    "port_xmit_constraint_errors": 8,
    "port_rcv_constraint_errors": 8,
    "local_link_integrity_errors": 4,
    "excessive_buffer_overrun_errors": 4,
    "VL15_dropped": 16,
}
_IB_ERROR_SATURATED = tuple((name, (1 << bits) - 1) for name, bits in IB_ERROR_COUNTER_BITS.items())
#: A data counter of a port without extended counters stops here.
_IB_DATA_SATURATED = (1 << 32) - 1
NIC_COUNTERS = ("rx_bytes", "tx_bytes", "rx_errors", "tx_errors", "rx_drops", "tx_drops")
NIC_ERROR_COUNTERS = ("rx_errors", "tx_errors", "rx_drops", "tx_drops")
DISK_COUNTERS = ("read_bytes", "write_bytes")

#: A smoothed rate below this (per second) is forgotten.
NEGLIGIBLE_PER_S = 1e-6

_K = TypeVar("_K", str, int)

Rates = dict[str, float | None]
"""Counter name → per second (None: no rate for this step)."""


def counter_delta(before: int, after: int, *, saturates_at: int | None = None) -> int | None:
    """How much a counter counted between two readings, or None when that cannot be known.

    None for a reset (the value went down, and not from near the top of a 32- or 64-bit
    range) and for a reading at ``saturates_at`` (a saturated counter hides what it missed).
    """
    if after == saturates_at:
        return None
    if after >= before:
        return after - before
    for limit in _WRAP_LIMITS:
        window = limit // WRAP_WINDOW
        if limit - window <= before < limit and after < window:
            return limit - before + after
    return None


def counter_rate(
    before: int | None,
    after: int | None,
    dt: float | None,
    *,
    saturates_at: int | None = None,
) -> float | None:
    """Per second between two readings ``dt`` seconds apart; None when it cannot be known."""
    if before is None or after is None or dt is None or dt <= 0:
        return None
    delta = counter_delta(before, after, saturates_at=saturates_at)
    if delta is None:
        return None
    return delta / dt if delta else 0.0  # the literal is one shared object: idle ports cost less


def _data_rate(
    counters: dict[str, int], old_counters: dict[str, int], name: str, dt: float | None
) -> float | None:
    """Bytes per second of a PMA data counter, which counts 4-byte words.

    The counter itself is rated, so that its wrap and saturation are the counter's, then
    scaled to bytes.
    """
    words = counter_rate(
        old_counters.get(name), counters[name], dt, saturates_at=_IB_DATA_SATURATED
    )
    return None if words is None else words * 4.0


def _pair_ports(before: IbSample | None, ports: list[IbPort]) -> list[IbPort | None]:
    """Each port's previous reading (None for a new port); by position when nothing moved."""
    if before is None:
        return [None] * len(ports)
    if len(before.ports) == len(ports) and all(
        a.port == b.port and a.hca == b.hca for a, b in zip(before.ports, ports, strict=True)
    ):
        return list(before.ports)
    by_key = {p.key: p for p in before.ports}
    return [by_key.get(p.key) for p in ports]


def _time(sample: Sample) -> float:
    return float(sample.mono if sample.mono is not None else sample.ts)


def step_seconds(before: Sample | None, after: Sample) -> float | None:
    """Seconds between two samples by the node's clock; None across a gap or a restart."""
    if before is None:
        return None
    if (before.mono is None) != (after.mono is None):
        return None  # one clock against another
    dt = _time(after) - _time(before)
    return dt if 0 < dt <= MAX_GAP_S else None


def _smooth(ema: dict[_K, float], key: _K, rate: float, keep: float) -> None:
    """Fold one step's rate into a moving average; keep = exp(-dt / tau).

    The averages are sparse: a counter that never counted has no entry (it reads as 0), and
    one whose average decayed to nothing loses its entry again.
    """
    if not rate and key not in ema:
        return
    value = ema.get(key, 0.0) * keep + rate * (1.0 - keep)
    if value > NEGLIGIBLE_PER_S:
        ema[key] = value
    else:
        del ema[key]


@dataclass(slots=True)
class NodeRates:
    """Derived per-second rates of one node: the latest step's, and smoothed error rates.

    Instantaneous (the last step): ``ib`` (per port ``hca/port``: ``rcv_bytes``,
    ``xmit_bytes`` and each PMA error counter), ``nic`` (per interface: bytes, errors, drops),
    ``disk`` (per device: ``read_bytes``, ``write_bytes``), ``gpu`` (per index: ``ecc_sbe``,
    ``ecc_dbe``). Smoothed, per second: ``ib_errors``, ``nic_errors``, ``gpu_ecc_sbe``.
    """

    dt: float | None = None
    ib: dict[str, Rates] = field(default_factory=dict)
    nic: dict[str, Rates] = field(default_factory=dict)
    disk: dict[str, Rates] = field(default_factory=dict)
    gpu: dict[int, Rates] = field(default_factory=dict)
    ib_errors: dict[str, dict[str, float]] = field(default_factory=dict)
    nic_errors: dict[str, dict[str, float]] = field(default_factory=dict)
    gpu_ecc_sbe: dict[int, float] = field(default_factory=dict)

    def update(self, before: Sample | None, after: Sample) -> None:
        """Take one step from ``before`` (the node's previous sample) to ``after``."""
        dt = step_seconds(before, after)
        if dt is None and before is not None:
            # Across a gap or a restart the old averages describe another time.
            self.ib_errors.clear()
            self.nic_errors.clear()
            self.gpu_ecc_sbe.clear()
        self.dt = dt
        previous = before.probes if before is not None and dt is not None else None
        self._update_ib(previous.ib if previous else None, after, dt)
        self._update_nic(previous.net if previous else None, after, dt)
        self._update_disk(previous.storage if previous else None, after, dt)
        self._update_gpu(previous.gpu if previous else None, after, dt)

    def _update_ib(self, before: IbSample | None, after: Sample, dt: float | None) -> None:
        # The hottest loop of the console (8 ports x 14 counters a node a second): the common
        # cases (same ports in the same order; error counters that did not move) take the
        # short paths, and zero rates share one float object.
        section = after.probes.ib
        if section is None or section.error is not None:
            return  # keep the last rates: a failed read is not zero traffic
        ports = section.ports
        olds = _pair_ports(before, ports) if dt is not None else [None] * len(ports)
        keep = math.exp(-dt / ERROR_TAU_S) if dt is not None else 1.0
        rates: dict[str, Rates] = {}
        empty: dict[str, int] = {}
        for port, old in zip(ports, olds, strict=True):
            key = port.key
            counters = port.counters
            old_counters = old.counters if old is not None else empty
            out: Rates = {
                "rcv_bytes": _data_rate(counters, old_counters, "port_rcv_data", dt)
                if "port_rcv_data" in counters
                else counter_rate(old.rcv_bytes if old else None, port.rcv_bytes, dt),
                "xmit_bytes": _data_rate(counters, old_counters, "port_xmit_data", dt)
                if "port_xmit_data" in counters
                else counter_rate(old.xmit_bytes if old else None, port.xmit_bytes, dt),
            }
            ema = self.ib_errors.get(key)
            for name, saturated in _IB_ERROR_SATURATED:
                value = counters.get(name)
                if value is None:
                    continue
                was = old_counters.get(name)
                if was == value and value != saturated and dt is not None:
                    out[name] = 0.0  # no new errors
                    if ema and name in ema:
                        _smooth(ema, name, 0.0, keep)
                    continue
                rate = counter_rate(was, value, dt, saturates_at=saturated)
                out[name] = rate
                if rate is None or (not rate and not ema):
                    continue
                if ema is None:
                    ema = self.ib_errors[key] = {}
                _smooth(ema, name, rate, keep)
            rates[key] = out
        self.ib = rates
        if self.ib_errors:
            for gone in [k for k, ema in self.ib_errors.items() if k not in rates or not ema]:
                del self.ib_errors[gone]

    def _update_nic(self, before: NetSample | None, after: Sample, dt: float | None) -> None:
        section = after.probes.net
        if section is None or section.error is not None:
            return
        old_nics = before.nics if before is not None else {}
        keep = math.exp(-dt / ERROR_TAU_S) if dt is not None else 1.0
        rates: dict[str, Rates] = {}
        for name, nic in section.nics.items():
            old = old_nics.get(name)
            out: Rates = {
                counter: counter_rate(
                    getattr(old, counter) if old is not None else None,
                    getattr(nic, counter),
                    dt,
                )
                for counter in NIC_COUNTERS
            }
            rates[name] = out
            ema = self.nic_errors.setdefault(name, {})
            for counter in NIC_ERROR_COUNTERS:
                rate = out[counter]
                if rate is not None:
                    _smooth(ema, counter, rate, keep)
        self.nic = rates
        for gone in [k for k, ema in self.nic_errors.items() if k not in rates or not ema]:
            del self.nic_errors[gone]

    def _update_disk(self, before: StorageSample | None, after: Sample, dt: float | None) -> None:
        section = after.probes.storage
        if section is None or section.error is not None:
            return
        old_disks = before.disks if before is not None else {}
        rates: dict[str, Rates] = {}
        for name, disk in section.disks.items():
            old = old_disks.get(name)
            rates[name] = {
                counter: counter_rate(
                    getattr(old, counter) if old is not None else None,
                    getattr(disk, counter),
                    dt,
                )
                for counter in DISK_COUNTERS
            }
        self.disk = rates

    def _update_gpu(self, before: GpuSample | None, after: Sample, dt: float | None) -> None:
        section = after.probes.gpu
        if section is None or section.error is not None:
            return
        old_gpus = {g.index: g for g in before.gpus} if before is not None else {}
        keep = math.exp(-dt / ECC_TAU_S) if dt is not None else 1.0
        rates: dict[int, Rates] = {}
        for gpu in section.gpus:
            old = old_gpus.get(gpu.index)
            out: Rates = {
                "ecc_sbe": counter_rate(
                    old.ecc_sbe_volatile if old is not None else None, gpu.ecc_sbe_volatile, dt
                ),
                "ecc_dbe": counter_rate(
                    old.ecc_dbe_aggregate if old is not None else None, gpu.ecc_dbe_aggregate, dt
                ),
            }
            rates[gpu.index] = out
            sbe = out["ecc_sbe"]
            if sbe is not None:
                _smooth(self.gpu_ecc_sbe, gpu.index, sbe, keep)
        self.gpu = rates

    def ib_total(self, name: str) -> float | None:
        """Sum over ports of one rate (``rcv_bytes``…); None when no port has one."""
        return _total(self.ib, name)

    def nic_total(self, name: str) -> float | None:
        """Sum over interfaces of one rate (``rx_bytes``…); None when none has one."""
        return _total(self.nic, name)


def _total(rates: dict[str, Rates], name: str) -> float | None:
    total: float | None = None
    for per_subject in rates.values():
        value = per_subject.get(name)
        if value is not None:
            total = value if total is None else total + value
    return total
