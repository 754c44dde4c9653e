"""The simulated node: a seeded, deterministic stand-in for a real 8-GPU training node.

Everything a reading shows is a function of the seed, the clock readings and the faults
injected, never of how often it was read: jobs and gaps come from a seeded, lazily drawn
timeline; counters are closed-form integrals of piecewise rates over that timeline; gauges
that lag (temperature, load averages) are first-order responses solved per segment. So a
sample costs a few exp() calls and dict building, whatever the time since the last one, and
the same seed with the same clock readings gives the same records. See docs/agent-sim.md.
"""

from __future__ import annotations

import bisect
import math
import operator
import os
import platform
import random
import threading
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple

from tidectl.agents.probes.base import Probe, Section
from tidectl.agents.probes.simfaults import (
    PHYS_STATES,
    Clear,
    Fault,
    FaultError,
    FaultFile,
    FileChange,
    RandomFaults,
)

Clock = Callable[[], float]

GPU_COUNT = 8
GPU_NAME = "NVIDIA H100 80GB HBM3"
#: What NVML reports as total framebuffer for an H100 80GB HBM3 (81559 MiB).
GPU_MEMORY_TOTAL = 81559 * 1024 * 1024
GPU_POWER_LIMIT_W = 700.0
DRIVER_VERSION = "550.54.15"
CUDA_VERSION = "12.4"
NVLINKS = 18
IB_RATE = "400 Gb/sec (4X NDR)"
IB_RATE_GBPS = 400.0
CPU_COUNT = 192  # 2 sockets x 48 cores x 2 threads
CPU_MODEL = "Intel(R) Xeon(R) Platinum 8468"
#: 2 TiB installed; the kernel's MemTotal is a little less (firmware and kernel reserve).
MEM_TOTAL = (2 * 1024**4 - 34 * 1024**3) // 4096 * 4096
NIC_SPEED_MBPS = 100000
#: Time constant of GPU temperature following power, in sim seconds.
TAU_TEMP_S = 30.0
STALE_AFTER_S = 2.0

#: Every file in an mlx5 port's counters/ folder.
IB_COUNTERS = (
    "VL15_dropped",
    "excessive_buffer_overrun_errors",
    "link_downed",
    "link_error_recovery",
    "local_link_integrity_errors",
    "multicast_rcv_packets",
    "multicast_xmit_packets",
    "port_rcv_constraint_errors",
    "port_rcv_data",
    "port_rcv_errors",
    "port_rcv_packets",
    "port_rcv_remote_physical_errors",
    "port_rcv_switch_relay_errors",
    "port_xmit_constraint_errors",
    "port_xmit_data",
    "port_xmit_discards",
    "port_xmit_packets",
    "port_xmit_wait",
    "symbol_error",
    "unicast_rcv_packets",
    "unicast_xmit_packets",
)
_PCI_BUSES = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)
_FAULT_POLL_S = 0.5
#: Segments of the past the timeline keeps (a few hours of jobs and gaps).
_KEEP_SEGMENTS = 32

# Integrated channels (rates per sim second; counters divide by time_scale so that the
# console sees realistic per-second rates whatever the speed-up).
_IB, _NIC_RX, _NIC_TX, _DISK_W, _DISK_R, _CPU = range(6)
_IDLE_RATES = (25e3, 150e3, 60e3, 1.5e6, 0.2e6, 0.012)
# Lagged channels: job power (0 when idle), job indicator, and the load averages' target.
_LAG_POWER, _LAG_BUSY, _LOAD1, _LOAD5, _LOAD15 = range(5)
_LAG_TAUS = (TAU_TEMP_S, TAU_TEMP_S, 60.0, 300.0, 900.0)
_IDLE_LOAD = 0.6
# The IB traffic of a training step is a sawtooth from 0.4x to 1.6x of the job's mean rate.
_SAW_LO, _SAW_HALF_SPAN = 0.4, 0.6

_M64 = (1 << 64) - 1


def _noise(key: int, step: int) -> float:
    """A deterministic value in [-1, 1) for (key, step): splitmix64, cheaper than an RNG."""
    x = (key * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & _M64
    x ^= x >> 29
    return (x >> 11) * (2.0 / (1 << 53)) - 1.0


def _guid(value: int) -> str:
    return "%04x:%04x:%04x:%04x" % (
        value >> 48 & 0xFFFF,
        value >> 32 & 0xFFFF,
        value >> 16 & 0xFFFF,
        value & 0xFFFF,
    )


class Segment(NamedTuple):
    """A stretch of the node's timeline, in clock readings: a training job or an idle gap."""

    start: float
    end: float
    job: bool


class _Job(NamedTuple):
    """One training job's parameters; rates are per sim second."""

    power_w: float
    util_lo: float
    util_hi: float
    mem_util: float
    mem_bytes: float
    step_s: float
    ib_bps: float
    nic_rx_bps: float
    nic_tx_bps: float
    ckpt_every_s: float
    ckpt_len_s: float
    ckpt_bps: float
    disk_read_bps: float
    cpu_busy: float
    load: float
    procs: int
    running: int
    host_mem_bytes: float


def _draw_job(rng: random.Random) -> _Job:
    u = rng.random
    return _Job(
        power_w=585.0 + 65.0 * u(),
        util_lo=88.0 + 4.0 * u(),
        util_hi=97.0 + 2.5 * u(),
        mem_util=35.0 + 20.0 * u(),
        mem_bytes=(60.5 + 14.0 * u()) * 1e9,
        step_s=0.8 + 2.2 * u(),
        ib_bps=(20.0 + 20.0 * u()) * 1e9,
        nic_rx_bps=(0.2 + 0.6 * u()) * 1e9,
        nic_tx_bps=(0.02 + 0.06 * u()) * 1e9,
        ckpt_every_s=300.0 + 600.0 * u(),
        ckpt_len_s=20.0 + 25.0 * u(),
        ckpt_bps=(1.5 + 1.5 * u()) * 1e9,
        disk_read_bps=(0.1 + 0.5 * u()) * 1e9,
        cpu_busy=0.2 + 0.25 * u(),
        load=30.0 + 40.0 * u(),
        procs=2000 + int(400 * u()),
        running=20 + int(40 * u()),
        host_mem_bytes=(250.0 + 350.0 * u()) * 1e9,
    )


def _partials(job: Optional[_Job], x: float) -> Tuple[float, ...]:
    """The integrals of every channel over the first ``x`` sim seconds of a segment."""
    if job is None:
        return tuple(rate * x for rate in _IDLE_RATES)
    period = job.step_s
    steps = math.floor(x / period)
    u = x - steps * period
    saw = steps * period + _SAW_LO * u + _SAW_HALF_SPAN * u * u / period
    every, burst = job.ckpt_every_s, job.ckpt_len_s
    rounds = math.floor(x / every)
    into = x - rounds * every
    ckpt = (rounds * burst + max(0.0, into - (every - burst))) * job.ckpt_bps
    return (
        job.ib_bps * saw,
        job.nic_rx_bps * x,
        job.nic_tx_bps * x,
        20e6 * x + ckpt,
        job.disk_read_bps * x,
        job.cpu_busy * x,
    )


def _targets(job: Optional[_Job]) -> Tuple[float, ...]:
    if job is None:
        return (0.0, 0.0, _IDLE_LOAD, _IDLE_LOAD, _IDLE_LOAD)
    return (job.power_w, 1.0, job.load, job.load, job.load)


def _lagged(y0: Tuple[float, ...], target: Tuple[float, ...], x: float) -> Tuple[float, ...]:
    return tuple(
        target[i] + (y0[i] - target[i]) * math.exp(-x / _LAG_TAUS[i]) for i in range(len(y0))
    )


class _Point(NamedTuple):
    """The timeline at one instant: segment, integrals so far, lagged values."""

    s: float
    x: float
    job: Optional[_Job]
    seg_sums: Tuple[float, ...]
    sums: Tuple[float, ...]
    lags: Tuple[float, ...]


class _Timeline:
    """Alternating jobs and gaps in sim seconds, drawn lazily, with per-segment prefix values."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        first_job = rng.random() < 0.6
        job = _draw_job(rng) if first_job else None
        length = self._length(job)
        start = -rng.random() * length  # the node is part-way through its first segment
        self.starts = [start]
        self.ends = [start + length]
        self.jobs = [job]
        self.sums = [(0.0,) * len(_IDLE_RATES)]
        self.lags = [_targets(job)]

    def _length(self, job: Optional[_Job]) -> float:
        if job is None:
            return 120.0 + 600.0 * self._rng.random()
        return 600.0 + 2100.0 * self._rng.random()

    def cover(self, s: float) -> None:
        """Draw segments until the timeline reaches ``s``."""
        while self.ends[-1] <= s:
            last = self.jobs[-1]
            start, length = self.starts[-1], self.ends[-1] - self.starts[-1]
            part = _partials(last, length)
            sums = tuple(map(operator.add, self.sums[-1], part))
            lags = _lagged(self.lags[-1], _targets(last), length)
            job = _draw_job(self._rng) if last is None else None
            self.starts.append(start + length)
            self.ends.append(start + length + self._length(job))
            self.jobs.append(job)
            self.sums.append(sums)
            self.lags.append(lags)

    def at(self, s: float) -> _Point:
        self.cover(s)
        i = max(0, bisect.bisect_right(self.starts, s) - 1)
        if i >= _KEEP_SEGMENTS * 2:
            # The node's time only moves forward: forget all but the last hours, so a node
            # hosted for weeks (or sped up) holds a few kB, not a growing history.
            drop = i - _KEEP_SEGMENTS
            for held in (self.starts, self.ends, self.jobs, self.sums, self.lags):
                del held[:drop]
            i -= drop
        x = s - self.starts[i]
        job = self.jobs[i]
        part = _partials(job, x)
        sums = tuple(map(operator.add, self.sums[i], part))
        return _Point(s, x, job, self.sums[i], sums, _lagged(self.lags[i], _targets(job), x))


class _Gpu(NamedTuple):
    number: int
    uuid: str
    serial: str
    pci_bus_id: str
    idle_w: float
    power_off: float
    mem_off: float
    reserved_bytes: int
    amb_c: float
    c_per_w: float
    phase_s: float
    key: int
    sbe_aggregate: int
    remapped_correctable: int


class _Port(NamedTuple):
    hca: str
    port: int
    name: str
    node_guid: str
    port_guid: str
    lid: int
    f_tx: float
    f_rx: float
    tx0: float
    rx0: float
    counters0: Dict[str, int]


class _Mount(NamedTuple):
    mountpoint: str
    device: str
    fstype: str
    kind: str
    options: str
    size: int
    used0: int
    reserved_frac: float
    inodes_total: int
    inodes_used0: int


class _Disk(NamedTuple):
    name: str
    share: float
    write0: int
    read0: int


class _Active:
    """A lasting fault in effect: where it came from and when it started (and will end)."""

    __slots__ = ("end_r", "fault", "key", "source", "start_r")

    def __init__(
        self, fault: Fault, source: str, start_r: float, end_r: Optional[float], key: Optional[str]
    ) -> None:
        self.fault = fault
        self.source = source
        self.start_r = start_r
        self.end_r = end_r
        self.key = key


class _GpuState:
    """What faults did to one GPU: counters they added, pending events, the hot overlay."""

    __slots__ = ("dbe", "hot_on", "hot_s0", "hot_target", "hot_w0", "pending", "sbe", "xids")

    def __init__(self) -> None:
        self.dbe = 0
        self.sbe = 0.0  # single-bit errors of faults that have ended
        self.pending = False
        self.xids: List[Tuple[int, float]] = []
        self.hot_on = False
        self.hot_w0 = 0.0
        self.hot_s0 = 0.0
        self.hot_target = 92.0

    def hot_weight(self, s: float) -> float:
        """How far temperature has moved toward the hot target (first-order, TAU_TEMP_S)."""
        decay = math.exp(-max(0.0, s - self.hot_s0) / TAU_TEMP_S)
        return 1.0 - (1.0 - self.hot_w0) * decay if self.hot_on else self.hot_w0 * decay


class _PortState:
    __slots__ = ("down_from", "high_rx", "high_tx", "link_downed", "lost", "symbols")

    def __init__(self) -> None:
        self.link_downed = 0
        self.symbols = 0.0  # symbol errors of faults that have ended
        self.lost = 0.0  # IB traffic integral the port missed while down (sim units)
        self.down_from: Optional[float] = None
        # High-water marks: float rounding at a down/up edge must not step a counter back.
        self.high_tx = 0.0
        self.high_rx = 0.0


class SimNode:
    """One simulated node's whole state; the five sim probes read it under one lock.

    ``time_scale`` speeds the node's own life up (job and gap lengths, training steps,
    thermal lag, random fault arrivals and durations); counter rates stay per real second,
    so a console sees realistic throughput at any speed.
    """

    def __init__(
        self,
        seed: int,
        hostname: Optional[str] = None,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        *,
        time_scale: float = 1.0,
        fault_rate_per_hour: float = 0.0,
        faults_path: Optional[str] = None,
    ) -> None:
        if not (math.isfinite(time_scale) and time_scale > 0):
            raise ValueError("time_scale must be a positive number, not %r" % time_scale)
        if not (math.isfinite(fault_rate_per_hour) and fault_rate_per_hour >= 0):
            raise ValueError("fault_rate_per_hour must be 0 or more, not %r" % fault_rate_per_hour)
        self.seed = seed
        self.hostname = hostname if hostname is not None else "sim-%d" % seed
        self.time_scale = float(time_scale)
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._c0 = clock()
        self._wall0 = wall()
        self._r = 0.0
        inventory = random.Random("tidectl-sim:%d:inventory" % seed)
        self._build_inventory(inventory)
        self._timeline = _Timeline(random.Random("tidectl-sim:%d:jobs" % seed))
        self._zero = self._timeline.at(0.0).sums
        self._high = self._zero
        self._point = self._timeline.at(0.0)
        self._cpu_prev: Optional[Tuple[float, float]] = None
        # Faults.
        self._active: List[_Active] = []
        self._gpu_state = [_GpuState() for _ in self._gpus]
        self._port_state = {p.name: _PortState() for p in self._ports}
        self._lost: Set[int] = set()
        self._down: Dict[str, str] = {}
        self._full: Dict[str, float] = {}
        self._stale: Set[str] = set()
        self._sbe: Dict[int, List[_Active]] = {}
        self._symbols: Dict[str, List[_Active]] = {}
        self._random = (
            RandomFaults(
                seed,
                fault_rate_per_hour,
                len(self._gpus),
                [p.name for p in self._ports],
                [m.mountpoint for m in self._mounts],
            )
            if fault_rate_per_hour > 0
            else None
        )
        self._file = FaultFile(faults_path, self.hostname) if faults_path else None
        self._polled: Optional[float] = None
        self._file_errors: List[str] = []
        self._rejected: Dict[str, str] = {}

    # -- inventory ---------------------------------------------------------------------------

    def _build_inventory(self, rng: random.Random) -> None:
        u = rng.random
        self.uptime0 = 86400.0 * (1.0 + 60.0 * u())
        self._gpus: List[_Gpu] = []
        for index in range(GPU_COUNT):
            bits = rng.getrandbits(128)
            self._gpus.append(
                _Gpu(
                    number=index,
                    uuid="GPU-%08x-%04x-%04x-%04x-%012x"
                    % (
                        bits >> 96,
                        bits >> 80 & 0xFFFF,
                        bits >> 64 & 0xFFFF,
                        bits >> 48 & 0xFFFF,
                        bits & 0xFFFFFFFFFFFF,
                    ),
                    serial="16541%08d" % int(u() * 1e8),
                    pci_bus_id="00000000:%02X:00.0" % _PCI_BUSES[index],
                    idle_w=72.0 + 16.0 * u(),
                    power_off=-12.0 + 24.0 * u(),
                    mem_off=(-0.4 + 0.8 * u()) * 1e9,
                    reserved_bytes=int((500 + 40 * u()) * 1024 * 1024),
                    amb_c=29.5 + 2.0 * u(),
                    c_per_w=0.064 + 0.008 * u(),
                    phase_s=0.05 * u(),
                    key=(self.seed * 1000003 + index * 7919) & _M64,
                    sbe_aggregate=int(u() * u() * 40),
                    remapped_correctable=1 if u() < 0.15 else 0,
                )
            )
        guid = 0xB83FD20300000000 | rng.getrandbits(24) << 8
        lid = 100 + int(u() * 3000)
        self._ports: List[_Port] = []
        for i in range(4 + int(u() * 5)):
            f_tx = 0.92 + 0.16 * u()
            base = dict.fromkeys(IB_COUNTERS, 0)
            base["symbol_error"] = int(u() * 6) if u() < 0.2 else 0
            base["link_downed"] = int(u() * 3)
            base["link_error_recovery"] = int(u() * 4)
            base["port_xmit_discards"] = int(u() * 50)
            base["port_rcv_errors"] = int(u() * u() * 5)
            self._ports.append(
                _Port(
                    hca="mlx5_%d" % i,
                    port=1,
                    name="mlx5_%d/1" % i,
                    node_guid=_guid(guid + i * 0x100),
                    port_guid=_guid(guid + i * 0x100),
                    lid=lid + i,
                    f_tx=f_tx,
                    f_rx=f_tx * (0.99 + 0.02 * u()),
                    tx0=1e13 + u() * 4e14,
                    rx0=1e13 + u() * 4e14,
                    counters0=base,
                )
            )
        tib = 1024**4
        self._mounts = [
            _Mount("/", "/dev/nvme0n1p2", "ext4", "local", "rw,relatime",
                   int(1.74 * tib), int((0.2 + 0.2 * u()) * 1.74 * tib), 0.05,
                   116654080, 1500000 + int(u() * 500000)),
            _Mount("/scratch", "/dev/md0", "xfs", "local",
                   "rw,noatime,attr2,inode64,logbufs=8,logbsize=32k,noquota",
                   int(27.9 * tib), int((0.1 + 0.3 * u()) * 27.9 * tib), 0.0,
                   2994954240, 20000 + int(u() * 80000)),
            _Mount("/home", "nas01:/export/home", "nfs4", "network",
                   "rw,relatime,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,"
                   "proto=tcp,timeo=600,retrans=2,sec=sys",
                   200 * tib, int((0.5 + 0.3 * u()) * 200 * tib), 0.0,
                   2147483647, 300000000 + int(u() * 1e8)),
            _Mount("/lustre", "10.10.0.1@o2ib:/lfs01", "lustre", "parallel",
                   "rw,flock,lazystatfs",
                   8 * 1024 * tib, int((0.4 + 0.4 * u()) * 8 * 1024 * tib), 0.0,
                   4000000000, 900000000 + int(u() * 1e9)),
        ]  # fmt: skip
        self._disks = [_Disk("nvme0n1", 0.03, int(u() * 1e13), int(u() * 1e13))]
        self._disks.append(_Disk("md0", 0.97, int(u() * 1e14), int(u() * 1e14)))
        for name in ("nvme1n1", "nvme2n1", "nvme3n1", "nvme4n1"):
            self._disks.append(_Disk(name, 0.97 / 4, int(u() * 3e13), int(u() * 3e13)))
        self._nic_mac = "0c:42:a1:%02x:%02x:%02x" % (
            int(u() * 256),
            int(u() * 256),
            int(u() * 256),
        )
        self._nic0 = (int(u() * 1e14), int(u() * 1e13), int(u() * 20), int(u() * 200))

    @property
    def gpu_uuids(self) -> List[str]:
        """The GPUs' UUIDs, by index."""
        return [g.uuid for g in self._gpus]

    @property
    def ports(self) -> List[str]:
        """The IB ports as ``hca/port``."""
        return [p.name for p in self._ports]

    @property
    def mounts(self) -> List[str]:
        """The mount points."""
        return [m.mountpoint for m in self._mounts]

    def timeline(self, until: float) -> List[Segment]:
        """Jobs and gaps up to clock reading ``until``, in clock readings.

        The node forgets segments that ended many segments ago, so on a long-lived node the
        list starts some hours back rather than at the start.
        """
        with self._lock:
            k = self.time_scale
            self._timeline.cover((until - self._c0) * k)
            tl = self._timeline
            return [
                Segment(
                    self._c0 + tl.starts[i] / k, self._c0 + tl.ends[i] / k, tl.jobs[i] is not None
                )
                for i in range(len(tl.starts))
                if self._c0 + tl.starts[i] / k < until
            ]

    # -- faults --------------------------------------------------------------------------------

    def inject(self, fault: Fault, duration_s: Optional[float] = None) -> None:
        """Start ``fault`` now, for ``duration_s`` real seconds or until cleared.

        One-shot faults (xid, ecc_dbe) fire once. Raises FaultError when the node has no
        such GPU, port or mount, or the fault names another node.
        """
        with self._lock:
            if fault.node is not None and fault.node != self.hostname:
                raise FaultError("fault is for node %s, this is %s" % (fault.node, self.hostname))
            problem = self._check(fault)
            if problem:
                raise FaultError(problem)
            r = self._sync()
            end = None if duration_s is None else r + duration_s
            self._start(fault, "inject", r, end_r=end, key=None, ts=self._wall())

    def clear(
        self,
        kind: Optional[str] = None,
        gpu: Optional[int] = None,
        port: Optional[str] = None,
        mount: Optional[str] = None,
    ) -> int:
        """End every fault matching all the filters given (any source); how many ended.

        Also drops XIDs not yet reported (kind None or xid) and resets the row-remap pending
        flag (kind None or ecc_dbe, as a GPU reset would). Counters keep what they counted.
        """
        with self._lock:
            r = self._sync()
            return self._clear(Clear(kind, gpu, port, mount), r, ("inject", "file", "random"))

    def active_faults(self) -> List[Fault]:
        """The lasting faults in effect now, oldest first."""
        with self._lock:
            self._sync()
            return [a.fault for a in self._active]

    def _check(self, fault: Fault) -> Optional[str]:
        if fault.gpu is not None and fault.gpu >= len(self._gpus):
            return "gpu=%d: this node has GPUs 0-%d" % (fault.gpu, len(self._gpus) - 1)
        if fault.port is not None and fault.port not in self._port_state:
            return "port=%s: this node has ports %s" % (fault.port, ", ".join(self.ports))
        if fault.mount is not None and fault.mount not in self.mounts:
            return "mount=%s: this node has mounts %s" % (fault.mount, ", ".join(self.mounts))
        return None

    def _start(
        self,
        fault: Fault,
        source: str,
        r: float,
        *,
        end_r: Optional[float],
        key: Optional[str],
        ts: float,
    ) -> None:
        if fault.kind == "xid":
            self._gpu_state[fault.gpu or 0].xids.append((fault.code, round(ts, 3)))
            return
        if fault.kind == "ecc_dbe":
            state = self._gpu_state[fault.gpu or 0]
            state.dbe += fault.count
            state.pending = True  # a remap waits for the GPU's next reset
            return
        self._active.append(_Active(fault, source, r, end_r, key))
        self._changed(fault, r)

    def _stop(self, active: _Active, r: float) -> None:
        self._active.remove(active)
        fault = active.fault
        lasted = max(0.0, r - active.start_r)
        if fault.kind == "ecc_sbe":
            self._gpu_state[fault.gpu or 0].sbe += fault.rate * lasted
        elif fault.kind == "symbol_errors":
            self._port_state[fault.port or ""].symbols += fault.rate * lasted
        self._changed(fault, r)

    def _changed(self, fault: Fault, r: float) -> None:
        """Handle the on/off edge of a condition, then rebuild the samples' lookups."""
        s = r * self.time_scale
        if fault.kind == "ib_down":
            port = self._port_state[fault.port or ""]
            down = any(
                a.fault.kind == "ib_down" and a.fault.port == fault.port for a in self._active
            )
            if down and port.down_from is None:
                port.down_from = self._timeline.at(s).sums[_IB]
                port.link_downed += 1
            elif not down and port.down_from is not None:
                port.lost += self._timeline.at(s).sums[_IB] - port.down_from
                port.down_from = None
        elif fault.kind == "hot":
            gpu = self._gpu_state[fault.gpu or 0]
            temps = [
                a.fault.temp
                for a in self._active
                if a.fault.kind == "hot" and a.fault.gpu == fault.gpu
            ]
            if temps:
                gpu.hot_target = max(temps)
            if bool(temps) != gpu.hot_on:
                gpu.hot_w0, gpu.hot_s0, gpu.hot_on = gpu.hot_weight(s), s, bool(temps)
        self._index_faults()

    def _index_faults(self) -> None:
        self._lost, self._down, self._full, self._stale = set(), {}, {}, set()
        self._sbe, self._symbols = {}, {}
        for a in self._active:
            f = a.fault
            if f.kind == "gpu_lost":
                self._lost.add(f.gpu or 0)
            elif f.kind == "ib_down":
                self._down[f.port or ""] = f.phys
            elif f.kind == "disk_full":
                self._full[f.mount or ""] = max(f.pct, self._full.get(f.mount or "", 0.0))
            elif f.kind == "stale_mount":
                self._stale.add(f.mount or "")
            elif f.kind == "ecc_sbe":
                self._sbe.setdefault(f.gpu or 0, []).append(a)
            elif f.kind == "symbol_errors":
                self._symbols.setdefault(f.port or "", []).append(a)

    def _clear(self, rule: Clear, r: float, sources: Tuple[str, ...]) -> int:
        ended = [a for a in self._active if a.source in sources and rule.matches(a.fault)]
        for active in ended:
            self._stop(active, r)
        for index, state in enumerate(self._gpu_state):
            if rule.kind in (None, "xid") and rule.matches(Fault("xid", gpu=index)):
                state.xids = []
            if rule.kind in (None, "ecc_dbe") and rule.matches(Fault("ecc_dbe", gpu=index)):
                state.pending = False
        return len(ended)

    def _apply_file(self, change: FileChange, r: float) -> None:
        for key in change.stopped:
            self._rejected.pop(key, None)
            for active in [a for a in self._active if a.source == "file" and a.key == key]:
                self._stop(active, r)
        for rule in change.clears:
            self._clear(rule, r, ("inject", "random"))
        name = os.path.basename(self._file.path) if self._file else "faults"
        for key, lineno, fault in change.started:
            problem = self._check(fault)
            if problem:
                self._rejected[key] = "%s:%d: %s" % (name, lineno, problem)
            else:
                self._start(fault, "file", r, end_r=None, key=key, ts=self._wall())
        self._file_errors = list(change.errors) + list(self._rejected.values())

    def _sync(self) -> float:
        """Bring faults up to now; the real seconds since the node started. Lock held."""
        # The model's clock never runs back, so counters never do either.
        r = max(self._clock() - self._c0, self._r)
        self._r = r
        k = self.time_scale
        while True:
            upcoming = self._random.peek() if self._random else None
            t_new = upcoming.at_s / k if upcoming else math.inf
            ending = min(
                (a for a in self._active if a.end_r is not None),
                key=lambda a: a.end_r or 0.0,
                default=None,
            )
            t_end = ending.end_r if ending and ending.end_r is not None else math.inf
            if min(t_new, t_end) > r:
                break
            if ending is not None and t_end <= t_new:
                self._stop(ending, t_end)
            elif upcoming is not None and self._random is not None:
                self._random.pop()
                end = None if upcoming.duration_s is None else t_new + upcoming.duration_s / k
                self._start(
                    upcoming.fault,
                    "random",
                    t_new,
                    end_r=end,
                    key=None,
                    ts=self._wall() - (r - t_new),
                )
        if self._file is not None and (self._polled is None or r - self._polled >= _FAULT_POLL_S):
            self._polled = r
            change = self._file.poll()
            if change is not None:
                self._apply_file(change, r)
        return r

    def _at(self, r: float) -> _Point:
        s = r * self.time_scale
        if s != self._point.s:
            point = self._timeline.at(s)
            # Integrals never step back, even by a rounding error at a period's edge.
            sums = tuple(map(max, point.sums, self._high))
            self._high = sums
            self._point = point._replace(sums=sums)
        return self._point

    # -- host ----------------------------------------------------------------------------------

    def host_facts(self) -> Section:
        return {
            "hostname": self.hostname,
            "kernel": "5.15.0-113-generic",
            "os": "Ubuntu 22.04.4 LTS",
            "arch": "x86_64",
            "python": platform.python_version(),
            "cpu_count": CPU_COUNT,
            "cpu_model": CPU_MODEL,
            "mem_total_bytes": MEM_TOTAL,
            "boot_time": int(self._wall0 - self.uptime0),
        }

    def host_sample(self) -> Section:
        """The host section; ``cpu_pct`` covers the time since the previous call."""
        with self._lock:
            r = self._sync()
            p = self._at(r)
            job = p.job
            step = int(p.s)
            n = _noise(self.seed, step)
            busy = p.sums[_CPU]
            prev, self._cpu_prev = self._cpu_prev, (p.s, busy)
            cpu_pct: Optional[float] = None
            if prev is not None:
                if p.s > prev[0]:
                    rate = (busy - prev[1]) / (p.s - prev[0])
                else:  # two reads at one instant: the rate of the moment
                    rate = job.cpu_busy if job else _IDLE_RATES[_CPU]
                cpu_pct = round(min(100.0, max(0.0, rate * 100.0 + 0.8 * n)), 1)
            loads = [round(max(0.0, v * (1.0 + 0.03 * n)), 2) for v in p.lags[_LOAD1:]]
            used = job.host_mem_bytes if job else 60e9
            section: Section = {
                "cpu_pct": cpu_pct,
                "cpu_count": CPU_COUNT,
                "load1": loads[0],
                "load5": loads[1],
                "load15": loads[2],
                "mem_total_bytes": MEM_TOTAL,
                "mem_available_bytes": int(MEM_TOTAL - used - 1e9 * (1.0 + n)),
                "swap_total_bytes": 0,
                "swap_used_bytes": 0,
                "uptime_s": round(self.uptime0 + r, 2),
                "procs": (job.procs if job else 1650) + int(5 * n),
                "procs_running": (job.running if job else 2) + int(2 * n),
            }
            if self._file_errors:
                section["fault_errors"] = list(self._file_errors)
            return section

    # -- gpu -----------------------------------------------------------------------------------

    def gpu_facts(self) -> Section:
        return {
            "source": "sim",
            "driver_version": DRIVER_VERSION,
            "cuda_version": CUDA_VERSION,
            "gpus": [
                {
                    "index": g.number,
                    "uuid": g.uuid,
                    "name": GPU_NAME,
                    "serial": g.serial,
                    "pci_bus_id": g.pci_bus_id,
                    "memory_total_bytes": GPU_MEMORY_TOTAL,
                    "power_limit_w": GPU_POWER_LIMIT_W,
                    "nvlink_count": NVLINKS,
                }
                for g in self._gpus
            ],
        }

    def gpu_sample(self) -> Section:
        """The gpu section; each XID event shows in exactly one call's ``xid`` list."""
        with self._lock:
            r = self._sync()
            p = self._at(r)
            s, job = p.s, p.job
            step = int(s)
            lag_power, lag_busy = p.lags[_LAG_POWER], p.lags[_LAG_BUSY]
            gpus: List[Section] = []
            for g in self._gpus:
                if g.number in self._lost:
                    continue
                n1 = _noise(g.key, step)
                n2 = _noise(g.key + 1, step)
                if job is not None:
                    phase = ((p.x + g.phase_s) / job.step_s) % 1.0
                    util = job.util_lo + (job.util_hi - job.util_lo) * phase + n1
                    mem_util = job.mem_util + 10.0 * phase + 2.0 * n2
                    mem_used = int(job.mem_bytes + g.mem_off)
                    power = job.power_w + g.power_off + 30.0 * (phase - 0.5) + 4.0 * n2
                    sm_clock = 1980 - int(max(0.0, power - 620.0) * 2.0)
                    gen = 5
                else:
                    util = mem_util = 0.0
                    mem_used = g.reserved_bytes
                    power = g.idle_w + 1.5 * n2
                    sm_clock, gen = 345, 1
                # Temperature follows the segment's mean power through a first-order lag.
                mean_power = g.idle_w + lag_power + (g.power_off - g.idle_w) * lag_busy
                temp = g.amb_c + g.c_per_w * mean_power + 0.4 * n1
                state = self._gpu_state[g.number]
                if state.hot_on or state.hot_w0 > 0.0:
                    temp += state.hot_weight(s) * (state.hot_target + 0.5 * n2 - temp)
                if temp >= 87.0 and job is not None:
                    sm_clock = int(sm_clock * 0.72)  # thermal slowdown
                sbe = state.sbe + sum(
                    a.fault.rate * (r - a.start_r) for a in self._sbe.get(g.number, ())
                )
                xids = [{"code": code, "ts": ts} for code, ts in state.xids]
                state.xids = []
                gpus.append(
                    {
                        "index": g.number,
                        "uuid": g.uuid,
                        "name": GPU_NAME,
                        "util_pct": round(min(100.0, max(0.0, util))),
                        "mem_util_pct": round(min(100.0, max(0.0, mem_util))),
                        "mem_used_bytes": mem_used,
                        "mem_total_bytes": GPU_MEMORY_TOTAL,
                        "temp_c": round(temp),
                        "power_w": round(min(power, GPU_POWER_LIMIT_W), 3),
                        "power_limit_w": GPU_POWER_LIMIT_W,
                        "sm_clock_mhz": sm_clock,
                        "ecc_sbe_volatile": int(sbe),
                        "ecc_dbe_volatile": state.dbe,
                        "ecc_sbe_aggregate": g.sbe_aggregate + int(sbe),
                        "ecc_dbe_aggregate": state.dbe,
                        # H100 remaps rows instead of retiring pages: NVML says not supported.
                        "retired_pages_sbe": None,
                        "retired_pages_dbe": None,
                        "retired_pages_pending": None,
                        "remapped_rows_correctable": g.remapped_correctable,
                        "remapped_rows_uncorrectable": state.dbe,
                        "remapped_rows_pending": state.pending,
                        "remapped_rows_failure": False,
                        "xid": xids,
                        "nvlink": {"up": NVLINKS, "total": NVLINKS},
                        "pcie": {"gen": gen, "width": 16, "max_gen": 5, "max_width": 16},
                        "field_errors": {},
                    }
                )
            return {"source": "sim", "driver_version": DRIVER_VERSION, "gpus": gpus}

    # -- ib ------------------------------------------------------------------------------------

    def ib_facts(self) -> Section:
        return {
            "hcas": [
                {
                    "name": p.hca,
                    "node_guid": p.node_guid,
                    "fw_ver": "28.39.1002",
                    "hca_type": "MT4129",
                    "board_id": "MT_0000000838",
                    "node_desc": "%s %s" % (self.hostname, p.hca),
                    "ports": [
                        {
                            "port": p.port,
                            "link_layer": "InfiniBand",
                            "rate": IB_RATE,
                            "rate_gbps": IB_RATE_GBPS,
                            "lid": p.lid,
                            "port_guid": p.port_guid,
                        }
                    ],
                }
                for p in self._ports
            ]
        }

    def ib_sample(self) -> Section:
        with self._lock:
            r = self._sync()
            p = self._at(r)
            flow = p.sums[_IB]
            zero = self._zero[_IB]
            k = self.time_scale
            ports: List[Section] = []
            for pt in self._ports:
                st = self._port_state[pt.name]
                # A down port carries nothing: its traffic stops where the link went down.
                moved = (st.down_from if st.down_from is not None else flow) - zero - st.lost
                st.high_tx = tx = max(st.high_tx, pt.tx0 + pt.f_tx * moved / k)
                st.high_rx = rx = max(st.high_rx, pt.rx0 + pt.f_rx * moved / k)
                tx_words, rx_words = int(tx) >> 2, int(rx) >> 2
                tx_packets, rx_packets = int(tx / 4200.0), int(rx / 4200.0)
                counters = dict(pt.counters0)
                counters["port_xmit_data"] = tx_words
                counters["port_rcv_data"] = rx_words
                counters["port_xmit_packets"] = tx_packets
                counters["port_rcv_packets"] = rx_packets
                counters["multicast_xmit_packets"] = tx_packets // 2000
                counters["multicast_rcv_packets"] = rx_packets // 2000
                counters["unicast_xmit_packets"] = tx_packets - tx_packets // 2000
                counters["unicast_rcv_packets"] = rx_packets - rx_packets // 2000
                counters["port_xmit_wait"] = int(tx / 1e4)
                symbols = st.symbols + sum(
                    a.fault.rate * (r - a.start_r) for a in self._symbols.get(pt.name, ())
                )
                counters["symbol_error"] += int(symbols)
                # A bad cable's symbol errors also corrupt some packets.
                counters["port_rcv_errors"] += int(symbols / 10.0)
                counters["link_downed"] += st.link_downed
                phys = self._down.get(pt.name)
                if phys is None:
                    state, state_name, phys_state, phys_name = 4, "ACTIVE", 5, "LinkUp"
                else:
                    state, state_name = 1, "DOWN"
                    phys_state, phys_name = PHYS_STATES[phys]
                ports.append(
                    {
                        "hca": pt.hca,
                        "port": pt.port,
                        "state": state,
                        "state_name": state_name,
                        "phys_state": phys_state,
                        "phys_state_name": phys_name,
                        "link_layer": "InfiniBand",
                        "rate": IB_RATE,
                        "rate_gbps": IB_RATE_GBPS,
                        "lid": pt.lid,
                        "sm_lid": 1,
                        "counters": counters,
                        "counter_errors": {},
                        "xmit_bytes": tx_words * 4,
                        "rcv_bytes": rx_words * 4,
                    }
                )
            return {"ports": ports}

    # -- storage -------------------------------------------------------------------------------

    def storage_facts(self) -> Section:
        return {
            "mounts": [
                {
                    "mountpoint": m.mountpoint,
                    "device": m.device,
                    "fstype": m.fstype,
                    "kind": m.kind,
                    "options": m.options,
                }
                for m in self._mounts
            ]
        }

    def storage_sample(self) -> Section:
        with self._lock:
            r = self._sync()
            p = self._at(r)
            k = self.time_scale
            written = (p.sums[_DISK_W] - self._zero[_DISK_W]) / k
            read = (p.sums[_DISK_R] - self._zero[_DISK_R]) / k
            # Checkpoints land on /scratch during a job and are staged off when it ends.
            job_written = (p.sums[_DISK_W] - p.seg_sums[_DISK_W]) / k if p.job else 0.0
            mounts: List[Section] = []
            for m in self._mounts:
                if m.mountpoint in self._stale:
                    mounts.append(
                        {
                            "mountpoint": m.mountpoint,
                            "fstype": m.fstype,
                            "kind": m.kind,
                            "size_bytes": None,
                            "used_bytes": None,
                            "avail_bytes": None,
                            "inodes_total": None,
                            "inodes_used": None,
                            "stale": True,
                            "error": "statvfs(%s) did not answer within %.1f s"
                            % (m.mountpoint, STALE_AFTER_S),
                        }
                    )
                    continue
                on_scratch = m.mountpoint == "/scratch"
                used = m.used0 + (int(job_written) if on_scratch else 0)
                scratch_files = int(job_written / 1e9) if on_scratch else 0
                full = self._full.get(m.mountpoint)
                if full is not None:
                    used = max(used, int(m.size * full / 100.0))
                used = min(used, m.size)
                reserved = int(m.size * m.reserved_frac)
                mounts.append(
                    {
                        "mountpoint": m.mountpoint,
                        "fstype": m.fstype,
                        "kind": m.kind,
                        "size_bytes": m.size,
                        "used_bytes": used,
                        "avail_bytes": max(0, m.size - used - reserved),
                        "inodes_total": m.inodes_total,
                        "inodes_used": m.inodes_used0 + scratch_files,
                        "stale": False,
                        "error": None,
                    }
                )
            disks: Dict[str, Section] = {}
            for d in self._disks:
                wb = d.write0 + int(written * d.share)
                rb = d.read0 + int(read * d.share)
                disks[d.name] = {
                    "reads": rb // 65536,
                    "writes": wb // 131072,
                    "read_bytes": rb,
                    "write_bytes": wb,
                    "io_ms": (rb + wb) // 3000000,
                }
            return {"mounts": mounts, "disks": disks}

    # -- net -----------------------------------------------------------------------------------

    def net_facts(self) -> Section:
        return {
            "nics": [
                {
                    "name": "eth0",
                    "mac": self._nic_mac,
                    "mtu": 9000,
                    "speed_mbps": NIC_SPEED_MBPS,
                    "driver": "mlx5_core",
                }
            ]
        }

    def net_sample(self) -> Section:
        with self._lock:
            r = self._sync()
            p = self._at(r)
            k = self.time_scale
            rx0, tx0, errors0, drops0 = self._nic0
            rx = rx0 + int((p.sums[_NIC_RX] - self._zero[_NIC_RX]) / k)
            tx = tx0 + int((p.sums[_NIC_TX] - self._zero[_NIC_TX]) / k)
            return {
                "nics": {
                    "eth0": {
                        "rx_bytes": rx,
                        "tx_bytes": tx,
                        "rx_packets": rx // 1400,
                        "tx_packets": tx // 900,
                        "rx_errors": errors0,
                        "tx_errors": 0,
                        "rx_drops": drops0 + int(rx // 10**11),
                        "tx_drops": 0,
                        "operstate": "up",
                        "carrier": True,
                        "speed_mbps": NIC_SPEED_MBPS,
                    }
                }
            }


class _SimProbe(Probe):
    """A probe reading one section of a shared SimNode (its lock makes sharing safe)."""

    def __init__(self, node: SimNode) -> None:
        self.node = node


class SimHostProbe(_SimProbe):
    name = "host"

    def facts(self) -> Section:
        return self.node.host_facts()

    def sample(self) -> Section:
        return self.node.host_sample()


class SimGpuProbe(_SimProbe):
    name = "gpu"

    def facts(self) -> Section:
        return self.node.gpu_facts()

    def sample(self) -> Section:
        return self.node.gpu_sample()


class SimIbProbe(_SimProbe):
    name = "ib"

    def facts(self) -> Section:
        return self.node.ib_facts()

    def sample(self) -> Section:
        return self.node.ib_sample()


class SimStorageProbe(_SimProbe):
    name = "storage"

    def facts(self) -> Section:
        return self.node.storage_facts()

    def sample(self) -> Section:
        return self.node.storage_sample()


class SimNetProbe(_SimProbe):
    name = "net"

    def facts(self) -> Section:
        return self.node.net_facts()

    def sample(self) -> Section:
        return self.node.net_sample()


def probes_for(node: SimNode) -> List[Probe]:
    """The five sim probes (host, gpu, ib, storage, net) over one node."""
    return [
        SimHostProbe(node),
        SimGpuProbe(node),
        SimIbProbe(node),
        SimStorageProbe(node),
        SimNetProbe(node),
    ]


def make_sim_probes(
    seed: int,
    hostname: Optional[str] = None,
    faults_path: Optional[str] = None,
    clock: Clock = time.monotonic,
    wall: Clock = time.time,
    *,
    time_scale: float = 1.0,
    fault_rate_per_hour: float = 0.0,
) -> List[Probe]:
    """A new simulated node and its five probes."""
    node = SimNode(
        seed,
        hostname,
        clock,
        wall,
        time_scale=time_scale,
        fault_rate_per_hour=fault_rate_per_hour,
        faults_path=faults_path,
    )
    return probes_for(node)


__all__ = [
    "TAU_TEMP_S",
    "Fault",
    "Segment",
    "SimGpuProbe",
    "SimHostProbe",
    "SimIbProbe",
    "SimNetProbe",
    "SimNode",
    "SimStorageProbe",
    "make_sim_probes",
    "probes_for",
]
