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

**What is computed when.** A thousand nodes send a sample a second each, and nearly all of
what a sample's counters could give is never looked at: only a node's detail view shows the
rates of each port, interface, disk and GPU. So ``NodeRates.update`` computes at once only
what every sample needs — the byte totals the history records, the smoothed error rates and
the "counted this step" events the health rules judge — with short paths for the common case
(the same ports as before, error counters that did not move); the per-subject rates
(``NodeRates.ib``, ``.nic``, ``.disk``, ``.gpu``) are computed from the same two readings,
by the same functions, the first time someone reads them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Generic, TypeVar

from tidectl.console.schema import (
    Gpu,
    GpuSample,
    IbCounters,
    IbPort,
    IbSample,
    NetSample,
    Nic,
    Sample,
    StorageSample,
)

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
_S = TypeVar("_S")

Rates = dict[str, float | None]
#: ``NodeRates.state()``: dt, ib_errors, nic_errors, gpu_ecc_sbe, ib_counted, gpu_ecc_dbe,
#: and the IB and NIC byte totals.
RatesState = tuple[
    float | None,
    dict[str, dict[str, float]],
    dict[str, dict[str, float]],
    dict[int, float],
    dict[str, dict[str, float]],
    dict[int, float],
    dict[str, float | None],
    dict[str, float | None],
]
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


def _words_rate(before: int | None, after: int, dt: float | None) -> float | None:
    """Bytes per second of a PMA data counter, which counts 4-byte words.

    The counter itself is rated, so that its wrap and saturation are the counter's, then
    scaled to bytes.
    """
    words = counter_rate(before, after, dt, saturates_at=_IB_DATA_SATURATED)
    return None if words is None else words * 4.0


def rcv_rate(old: IbPort | None, new: IbPort, dt: float | None) -> float | None:
    """Bytes received per second by one port: its PMA data counter, else ``rcv_bytes``."""
    words = new.counters.port_rcv_data
    if words is None:
        return counter_rate(old.rcv_bytes if old else None, new.rcv_bytes, dt)
    return _words_rate(old.counters.port_rcv_data if old else None, words, dt)


def xmit_rate(old: IbPort | None, new: IbPort, dt: float | None) -> float | None:
    """Bytes sent per second by one port: its PMA data counter, else ``xmit_bytes``."""
    words = new.counters.port_xmit_data
    if words is None:
        return counter_rate(old.xmit_bytes if old else None, new.xmit_bytes, dt)
    return _words_rate(old.counters.port_xmit_data if old else None, words, dt)


def port_rates(old: IbPort | None, new: IbPort, dt: float | None) -> Rates:
    """One port's step: bytes each way, and each PMA error counter the port reports."""
    out: Rates = {"rcv_bytes": rcv_rate(old, new, dt), "xmit_bytes": xmit_rate(old, new, dt)}
    counters = new.counters
    old_counters = old.counters if old is not None else None
    for name, saturated in _IB_ERROR_SATURATED:
        value = getattr(counters, name)
        if value is not None:
            was = getattr(old_counters, name) if old_counters is not None else None
            out[name] = counter_rate(was, value, dt, saturates_at=saturated)
    return out


def _pair_ports(before: IbSample | None, ports: list[IbPort]) -> list[IbPort | None]:
    """Each port's previous reading (None for a new port); by position when nothing moved."""
    if before is None:
        return [None] * len(ports)
    olds = before.ports
    if len(olds) == len(ports):
        # A plain loop, not all() over a generator: this runs for every sample of every node,
        # and the generator's frame costs more than the comparisons.
        for a, b in zip(olds, ports, strict=True):
            if a.port != b.port or a.hca != b.hca:
                break
        else:
            return list(olds)
    by_key = {p.key: p for p in before.ports}
    return [by_key.get(p.key) for p in ports]


def ib_rates(before: IbSample | None, after: IbSample, dt: float | None) -> dict[str, Rates]:
    """Per port (``hca/port``) of one step: see ``port_rates``."""
    ports = after.ports
    olds = _pair_ports(before, ports)
    return {port.key: port_rates(old, port, dt) for old, port in zip(olds, ports, strict=True)}


def nic_rates(before: NetSample | None, after: NetSample, dt: float | None) -> dict[str, Rates]:
    """Per interface of one step: bytes, errors and drops each way."""
    old_nics = before.nics if before is not None else {}
    rates: dict[str, Rates] = {}
    for name, nic in after.nics.items():
        old = old_nics.get(name)
        rates[name] = {
            counter: counter_rate(
                getattr(old, counter) if old is not None else None, getattr(nic, counter), dt
            )
            for counter in NIC_COUNTERS
        }
    return rates


def disk_rates(
    before: StorageSample | None, after: StorageSample, dt: float | None
) -> dict[str, Rates]:
    """Per block device of one step: bytes read and written."""
    old_disks = before.disks if before is not None else {}
    rates: dict[str, Rates] = {}
    for name, disk in after.disks.items():
        old = old_disks.get(name)
        rates[name] = {
            counter: counter_rate(
                getattr(old, counter) if old is not None else None, getattr(disk, counter), dt
            )
            for counter in DISK_COUNTERS
        }
    return rates


def gpu_rates(before: GpuSample | None, after: GpuSample, dt: float | None) -> dict[int, Rates]:
    """Per GPU index of one step: corrected (volatile) and lifetime uncorrected ECC errors."""
    old_gpus = {g.index: g for g in before.gpus} if before is not None else {}
    rates: dict[int, Rates] = {}
    for gpu in after.gpus:
        old = old_gpus.get(gpu.index)
        rates[gpu.index] = {
            "ecc_sbe": counter_rate(
                old.ecc_sbe_volatile if old is not None else None, gpu.ecc_sbe_volatile, dt
            ),
            "ecc_dbe": counter_rate(
                old.ecc_dbe_aggregate if old is not None else None, gpu.ecc_dbe_aggregate, dt
            ),
        }
    return rates


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


def _errors_moved(new: IbCounters, old: IbCounters) -> bool:
    """Whether any PMA error counter (``IB_ERROR_COUNTER_BITS``) differs between two
    readings of a port.

    Field by field on purpose: ``astuple`` would read them all in one C call, but would
    also touch the old reading's data counters, large ints that are out of the CPU's caches
    by the next sample; errors are mostly small ints, which Python shares.
    """
    return (
        new.symbol_error != old.symbol_error
        or new.link_error_recovery != old.link_error_recovery
        or new.link_downed != old.link_downed
        or new.port_rcv_errors != old.port_rcv_errors
        or new.port_rcv_remote_physical_errors != old.port_rcv_remote_physical_errors
        or new.port_rcv_switch_relay_errors != old.port_rcv_switch_relay_errors
        or new.port_xmit_discards != old.port_xmit_discards
        or new.port_xmit_constraint_errors != old.port_xmit_constraint_errors
        or new.port_rcv_constraint_errors != old.port_rcv_constraint_errors
        or new.local_link_integrity_errors != old.local_link_integrity_errors
        or new.excessive_buffer_overrun_errors != old.excessive_buffer_overrun_errors
        or new.VL15_dropped != old.VL15_dropped
    )


def _ib_byte_totals(
    olds: list[IbPort | None], ports: list[IbPort], dt: float
) -> tuple[float | None, float | None, bool]:
    """Bytes received and sent per second by all ports together (None when no port has a
    rate), and whether any port's error counters moved.

    The hottest loop of the console (8 ports a node a second): the common step of a data
    counter (both readings there, counting up, not saturated) is rated inline, exactly as
    ``rcv_rate``/``xmit_rate`` would; the rest goes to them.
    """
    rcv_total: float | None = None
    xmit_total: float | None = None
    errors_moved = False
    for old, port in zip(olds, ports, strict=True):
        if old is None:
            continue  # a new port: no rates yet
        counters, old_counters = port.counters, old.counters
        words, was = counters.port_rcv_data, old_counters.port_rcv_data
        if words is not None and was is not None and was <= words and words != _IB_DATA_SATURATED:
            rcv: float | None = (words - was) / dt * 4.0
        else:
            rcv = rcv_rate(old, port, dt)
        if rcv is not None:
            rcv_total = rcv if rcv_total is None else rcv_total + rcv
        words, was = counters.port_xmit_data, old_counters.port_xmit_data
        if words is not None and was is not None and was <= words and words != _IB_DATA_SATURATED:
            xmit: float | None = (words - was) / dt * 4.0
        else:
            xmit = xmit_rate(old, port, dt)
        if xmit is not None:
            xmit_total = xmit if xmit_total is None else xmit_total + xmit
        if not errors_moved and _errors_moved(counters, old_counters):
            errors_moved = True
    return rcv_total, xmit_total, errors_moved


class _Deferred(Generic[_S, _K]):
    """The per-subject rates of one section's latest step, computed when first read.

    It keeps the step's two readings until then (the previous one a sample longer than the
    fleet would): a few kB a node, for not rating a thousand nodes' ports, interfaces, disks
    and GPUs every second when a screen shows a handful of them.
    """

    __slots__ = ("_compute", "_rates", "_step")

    def __init__(self, compute: Callable[[_S | None, _S, float | None], dict[_K, Rates]]):
        self._compute: Callable[[_S | None, _S, float | None], dict[_K, Rates]] = compute
        self._step: tuple[_S | None, _S, float | None] | None = None
        self._rates: dict[_K, Rates] = {}

    def step(self, before: _S | None, after: _S, dt: float | None) -> None:
        self._step = (before, after, dt)

    @property
    def rates(self) -> dict[_K, Rates]:
        if self._step is not None:
            self._rates = self._compute(*self._step)
            self._step = None  # rated: the two readings can go
        return self._rates


class NodeRates:
    """Derived per-second rates of one node: the latest step's, and smoothed error rates.

    Instantaneous (the last step), computed when first read: ``ib`` (per port ``hca/port``:
    ``rcv_bytes``, ``xmit_bytes`` and each PMA error counter), ``nic`` (per interface: bytes,
    errors, drops), ``disk`` (per device: ``read_bytes``, ``write_bytes``), ``gpu`` (per
    index: ``ecc_sbe``, ``ecc_dbe``). Kept up to date by every step: the totals of
    ``ib_total``/``nic_total`` for bytes; smoothed, per second: ``ib_errors``,
    ``nic_errors``, ``gpu_ecc_sbe``; and what counted in the step, per second:
    ``ib_counted`` (per port, the error counters that rose) and ``gpu_ecc_dbe`` (per GPU
    index, when its lifetime uncorrected ECC count rose).

    A section that failed in the new sample keeps the last step's rates: a failed read is not
    zero traffic.
    """

    __slots__ = (
        "_disk",
        "_gpu",
        "_ib",
        "_ib_totals",
        "_later",
        "_nic",
        "_nic_totals",
        "dt",
        "gpu_ecc_dbe",
        "gpu_ecc_sbe",
        "ib_counted",
        "ib_errors",
        "nic_errors",
    )

    def __init__(self) -> None:
        self.dt: float | None = None
        self.ib_errors: dict[str, dict[str, float]] = {}
        self.nic_errors: dict[str, dict[str, float]] = {}
        self.gpu_ecc_sbe: dict[int, float] = {}
        self.ib_counted: dict[str, dict[str, float]] = {}
        self.gpu_ecc_dbe: dict[int, float] = {}
        self._ib_totals: dict[str, float | None] = {}
        self._nic_totals: dict[str, float | None] = {}
        self._ib: _Deferred[IbSample, str] = _Deferred(ib_rates)
        self._nic: _Deferred[NetSample, str] = _Deferred(nic_rates)
        self._disk: _Deferred[StorageSample, str] = _Deferred(disk_rates)
        self._gpu: _Deferred[GpuSample, int] = _Deferred(gpu_rates)
        #: Set by ``adopt``: the two samples the per-subject rates come from, when read.
        self._later: Callable[[], tuple[Sample | None, Sample] | None] | None = None

    @property
    def ib(self) -> dict[str, Rates]:
        self._catch_up()
        return self._ib.rates

    @property
    def nic(self) -> dict[str, Rates]:
        self._catch_up()
        return self._nic.rates

    @property
    def disk(self) -> dict[str, Rates]:
        self._catch_up()
        return self._disk.rates

    @property
    def gpu(self) -> dict[int, Rates]:
        self._catch_up()
        return self._gpu.rates

    def state(self) -> RatesState:
        """What ``adopt`` takes: the smoothed and per-step numbers (small dicts)."""
        return (
            self.dt,
            self.ib_errors,
            self.nic_errors,
            self.gpu_ecc_sbe,
            self.ib_counted,
            self.gpu_ecc_dbe,
            self._ib_totals,
            self._nic_totals,
        )

    def adopt(
        self, state: RatesState, samples: Callable[[], tuple[Sample | None, Sample] | None]
    ) -> None:
        """Take the rates another ``NodeRates`` worked out for this node (a collector
        worker's): its ``state()`` as it is, and the per-subject rates from ``samples()``
        — the previous and the latest sample — only when first read. (One difference: a
        section that failed in the latest sample shows no per-subject rates here, where the
        worker keeps the last step's.)"""
        (
            self.dt,
            self.ib_errors,
            self.nic_errors,
            self.gpu_ecc_sbe,
            self.ib_counted,
            self.gpu_ecc_dbe,
            self._ib_totals,
            self._nic_totals,
        ) = state
        self._later = samples

    def _catch_up(self) -> None:
        if self._later is None:
            return
        samples, self._later = self._later(), None
        fresh = NodeRates()
        if samples is not None:
            fresh.update(*samples)
        self._ib, self._nic, self._disk, self._gpu = fresh._ib, fresh._nic, fresh._disk, fresh._gpu

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
        probes = after.probes
        self._step_ib(previous.ib if previous else None, probes.ib, dt)
        self._step_nic(previous.net if previous else None, probes.net, dt)
        storage = probes.storage
        if storage is not None and storage.error is None:
            self._disk.step(previous.storage if previous else None, storage, dt)
        self._step_gpu(previous.gpu if previous else None, probes.gpu, dt)

    def _step_ib(self, before: IbSample | None, section: IbSample | None, dt: float | None) -> None:
        if section is None or section.error is not None:
            return
        self._ib.step(before, section, dt)
        ports = section.ports
        self.ib_counted = {}
        if dt is None:
            self._ib_totals = {"rcv_bytes": None, "xmit_bytes": None}
        else:
            olds = _pair_ports(before, ports)
            rcv, xmit, errors_moved = _ib_byte_totals(olds, ports, dt)
            self._ib_totals = {"rcv_bytes": rcv, "xmit_bytes": xmit}
            if errors_moved or self.ib_errors:
                self._smooth_ib_errors(olds, ports, dt)
        if self.ib_errors:
            keys = {port.key for port in ports}
            for gone in [k for k, ema in self.ib_errors.items() if k not in keys or not ema]:
                del self.ib_errors[gone]

    def _smooth_ib_errors(self, olds: list[IbPort | None], ports: list[IbPort], dt: float) -> None:
        """Fold the step into the smoothed error rates of ports whose counters moved or that
        have an average to decay; note the counters that counted."""
        keep = math.exp(-dt / ERROR_TAU_S)
        for old, port in zip(olds, ports, strict=True):
            if old is None:
                continue
            key = port.key
            ema = self.ib_errors.get(key)
            counters, old_counters = port.counters, old.counters
            if ema is None and not _errors_moved(counters, old_counters):
                continue  # nothing counted, nothing to decay
            counted: dict[str, float] = {}
            for name, saturated in _IB_ERROR_SATURATED:
                value = getattr(counters, name)
                if value is None:
                    continue
                rate = counter_rate(getattr(old_counters, name), value, dt, saturates_at=saturated)
                if rate is None:
                    continue
                if rate:
                    counted[name] = rate
                    if ema is None:
                        ema = self.ib_errors[key] = {}
                if ema is not None:
                    _smooth(ema, name, rate, keep)
            if counted:
                self.ib_counted[key] = counted

    def _step_nic(
        self, before: NetSample | None, section: NetSample | None, dt: float | None
    ) -> None:
        if section is None or section.error is not None:
            return
        self._nic.step(before, section, dt)
        old_nics = before.nics if before is not None else {}
        rx_total: float | None = None
        tx_total: float | None = None
        for name, nic in section.nics.items():
            old = old_nics.get(name)
            if old is None or dt is None:
                continue
            rx = counter_rate(old.rx_bytes, nic.rx_bytes, dt)
            if rx is not None:
                rx_total = rx if rx_total is None else rx_total + rx
            tx = counter_rate(old.tx_bytes, nic.tx_bytes, dt)
            if tx is not None:
                tx_total = tx if tx_total is None else tx_total + tx
            if name in self.nic_errors or (
                nic.rx_errors != old.rx_errors
                or nic.tx_errors != old.tx_errors
                or nic.rx_drops != old.rx_drops
                or nic.tx_drops != old.tx_drops
            ):
                self._smooth_nic_errors(name, old, nic, dt)
        self._nic_totals = {"rx_bytes": rx_total, "tx_bytes": tx_total}
        if self.nic_errors:
            nics = section.nics
            for gone in [k for k, ema in self.nic_errors.items() if k not in nics or not ema]:
                del self.nic_errors[gone]

    def _smooth_nic_errors(self, name: str, old: Nic, nic: Nic, dt: float) -> None:
        ema = self.nic_errors.setdefault(name, {})
        keep = math.exp(-dt / ERROR_TAU_S)
        for counter in NIC_ERROR_COUNTERS:
            rate = counter_rate(getattr(old, counter), getattr(nic, counter), dt)
            if rate is not None:
                _smooth(ema, counter, rate, keep)

    def _step_gpu(
        self, before: GpuSample | None, section: GpuSample | None, dt: float | None
    ) -> None:
        if section is None or section.error is not None:
            return
        self._gpu.step(before, section, dt)
        self.gpu_ecc_dbe = {}
        if before is None or dt is None:
            return
        gpus = section.gpus
        olds = before.gpus
        if not self.gpu_ecc_sbe and len(olds) == len(gpus):
            # A plain loop, not all() over a generator (see ``_pair_ports``).
            for a, b in zip(olds, gpus, strict=True):
                if (
                    a.index != b.index
                    or a.ecc_sbe_volatile != b.ecc_sbe_volatile
                    or a.ecc_dbe_aggregate != b.ecc_dbe_aggregate
                ):
                    break
            else:
                return  # no ECC error counted, no average to decay
        self._smooth_gpu_ecc(olds, gpus, dt)

    def _smooth_gpu_ecc(self, olds: list[Gpu], gpus: list[Gpu], dt: float) -> None:
        old_gpus = {g.index: g for g in olds}
        keep = math.exp(-dt / ECC_TAU_S)
        for gpu in gpus:
            old = old_gpus.get(gpu.index)
            if old is None:
                continue
            sbe = counter_rate(old.ecc_sbe_volatile, gpu.ecc_sbe_volatile, dt)
            if sbe is not None:
                _smooth(self.gpu_ecc_sbe, gpu.index, sbe, keep)
            dbe = counter_rate(old.ecc_dbe_aggregate, gpu.ecc_dbe_aggregate, dt)
            if dbe:
                self.gpu_ecc_dbe[gpu.index] = dbe
            else:  # the last reading of an index counts, as in ``gpu_rates``
                self.gpu_ecc_dbe.pop(gpu.index, None)

    def ib_total(self, name: str) -> float | None:
        """Sum over ports of one rate (``rcv_bytes``…); None when no port has one."""
        if name in self._ib_totals:
            return self._ib_totals[name]
        return _total(self.ib, name)

    def nic_total(self, name: str) -> float | None:
        """Sum over interfaces of one rate (``rx_bytes``…); None when none has one."""
        if name in self._nic_totals:
            return self._nic_totals[name]
        return _total(self.nic, name)


def _total(rates: dict[str, Rates], name: str) -> float | None:
    total: float | None = None
    for per_subject in rates.values():
        value = per_subject.get(name)
        if value is not None:
            total = value if total is None else total + value
    return total
