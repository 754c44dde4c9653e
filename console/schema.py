"""Typed, validated records from agents: the console's reading of docs/agent-protocol.md.

``msgspec`` decodes and validates a line in one pass, into these structs, in microseconds —
what lets one console process read a thousand nodes a second. Every field has a default, and
unknown fields are ignored, so an agent of a newer minor schema still decodes (DESIGN.md §3).
A value of the wrong type fails the whole line with a path to the field
(``Expected `int`, got `str` - at `$.probes.gpu.gpus[0].temp_c```), which the collector shows
as the node's error.
"""

from __future__ import annotations

from typing import Any

import msgspec

# Numbers from agents may be ints or floats (JSON does not say); gauges accept both.
Num = int | float


class _Record(msgspec.Struct, kw_only=True, gc=False):
    """Base of every record: keyword fields, and **not tracked by the cyclic GC**.

    A decoded record is a tree (structs, lists, dicts of numbers and strings) that nothing
    ever points back into, so it can never be part of a cycle. A thousand nodes keep about
    half a million of these objects alive (each node's latest sample); tracked, every full
    collection would walk all of them. ``gc=False`` also makes each struct 16 bytes smaller
    and decoding a little faster (msgspec's documentation of the ``gc`` option).
    """


class _Section(_Record):
    #: The probe failed as a whole this tick (or did not finish: ``timed_out``).
    error: str | None = None
    timed_out: bool = False


# --- host -------------------------------------------------------------------------------------


class HostSample(_Section):
    cpu_pct: Num | None = None
    cpu_count: int | None = None
    load1: Num | None = None
    load5: Num | None = None
    load15: Num | None = None
    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    swap_total_bytes: int | None = None
    swap_used_bytes: int | None = None
    uptime_s: Num | None = None
    procs: int | None = None
    procs_running: int | None = None
    fault_errors: list[str] | None = None


# --- gpu --------------------------------------------------------------------------------------


class Xid(_Record):
    code: int
    ts: Num | None = None


class NvLink(_Record):
    up: int
    total: int


class Pcie(_Record):
    gen: int | None = None
    width: int | None = None
    max_gen: int | None = None
    max_width: int | None = None


class Gpu(_Record):
    index: int
    uuid: str | None = None
    name: str | None = None
    util_pct: Num | None = None
    mem_util_pct: Num | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    temp_c: Num | None = None
    power_w: Num | None = None
    power_limit_w: Num | None = None
    sm_clock_mhz: Num | None = None
    ecc_sbe_volatile: int | None = None
    ecc_dbe_volatile: int | None = None
    ecc_sbe_aggregate: int | None = None
    ecc_dbe_aggregate: int | None = None
    retired_pages_sbe: int | None = None
    retired_pages_dbe: int | None = None
    retired_pages_pending: bool | None = None
    remapped_rows_correctable: int | None = None
    remapped_rows_uncorrectable: int | None = None
    remapped_rows_pending: bool | None = None
    remapped_rows_failure: bool | None = None
    xid: list[Xid] | None = None
    nvlink: NvLink | None = None
    pcie: Pcie | None = None
    field_errors: dict[str, str] | None = None


class GpuSample(_Section):
    source: str | None = None
    driver_version: str | None = None
    gpus: list[Gpu] = msgspec.field(default_factory=list)
    no_driver: str | None = None


# --- ib ---------------------------------------------------------------------------------------


class IbCounters(_Record):
    """The PMA counters of one port: every file of an mlx5 port's ``counters/`` folder.

    Decision: a struct with these names, not ``dict[str, int]``. The agent sends every file
    it finds (``docs/agent-protocol.md``). The console computes on 14 of them (the 12 error
    counters of ``rates.IB_ERROR_COUNTER_BITS``, first here, and the two data counters) and
    keeps the other standard ones for people to read (``port_xmit_wait`` is how congestion
    shows). Fixed fields make a whole sample's decoding about 15 % cheaper than a dict of
    21 keys a port (no key strings, no hash table), and ``counters.symbol_error`` is a slot
    read. The price: a counter not named here (an EFA port's ``hw_counters/``, a vendor's
    extra file) is dropped on decode, because msgspec cannot keep unknown fields (msgspec
    issue #490). No rule reads such counters today; one that needs another adds a line here,
    and no agent change is needed (agents already send them). A counter that is absent, or
    ``null`` (the agent could not read it; ``counter_errors`` says why), is None.
    """

    symbol_error: int | None = None
    link_error_recovery: int | None = None
    link_downed: int | None = None
    port_rcv_errors: int | None = None
    port_rcv_remote_physical_errors: int | None = None
    port_rcv_switch_relay_errors: int | None = None
    port_xmit_discards: int | None = None
    port_xmit_constraint_errors: int | None = None
    port_rcv_constraint_errors: int | None = None
    local_link_integrity_errors: int | None = None
    excessive_buffer_overrun_errors: int | None = None
    VL15_dropped: int | None = None  # the sysfs file's name
    #: Data counters count 4-byte words (IBA PortCounters); ``IbPort.*_bytes`` are bytes.
    port_xmit_data: int | None = None
    port_rcv_data: int | None = None
    port_xmit_packets: int | None = None
    port_rcv_packets: int | None = None
    port_xmit_wait: int | None = None
    unicast_xmit_packets: int | None = None
    unicast_rcv_packets: int | None = None
    multicast_xmit_packets: int | None = None
    multicast_rcv_packets: int | None = None


class IbPort(_Record):
    hca: str
    port: int
    state: int | None = None
    state_name: str | None = None
    phys_state: int | None = None
    phys_state_name: str | None = None
    link_layer: str | None = None
    rate: str | None = None
    rate_gbps: Num | None = None
    lid: int | None = None
    sm_lid: int | None = None
    counters: IbCounters = msgspec.field(default_factory=IbCounters)
    counter_errors: dict[str, str] | None = None
    xmit_bytes: int | None = None
    rcv_bytes: int | None = None

    @property
    def key(self) -> str:
        return f"{self.hca}/{self.port}"


class IbSample(_Section):
    ports: list[IbPort] = msgspec.field(default_factory=list)


# --- storage ----------------------------------------------------------------------------------


class Mount(_Record):
    mountpoint: str
    fstype: str | None = None
    kind: str | None = None
    size_bytes: int | None = None
    used_bytes: int | None = None
    avail_bytes: int | None = None
    inodes_total: int | None = None
    inodes_used: int | None = None
    stale: bool = False
    error: str | None = None

    @property
    def used_fraction(self) -> float | None:
        """Used over what users can have (used + avail), as ``df`` computes Use%."""
        if self.used_bytes is None or self.avail_bytes is None:
            return None
        total = self.used_bytes + self.avail_bytes
        return self.used_bytes / total if total > 0 else None


class Disk(_Record):
    reads: int | None = None
    writes: int | None = None
    read_bytes: int | None = None
    write_bytes: int | None = None
    io_ms: int | None = None


class StorageSample(_Section):
    mounts: list[Mount] = msgspec.field(default_factory=list)
    disks: dict[str, Disk] = msgspec.field(default_factory=dict)


# --- net --------------------------------------------------------------------------------------


class Nic(_Record):
    rx_bytes: int | None = None
    tx_bytes: int | None = None
    rx_packets: int | None = None
    tx_packets: int | None = None
    rx_errors: int | None = None
    tx_errors: int | None = None
    rx_drops: int | None = None
    tx_drops: int | None = None
    operstate: str | None = None
    carrier: int | bool | None = None
    speed_mbps: Num | None = None


class NetSample(_Section):
    nics: dict[str, Nic] = msgspec.field(default_factory=dict)


# --- records ----------------------------------------------------------------------------------


class Probes(_Record):
    host: HostSample | None = None
    gpu: GpuSample | None = None
    ib: IbSample | None = None
    storage: StorageSample | None = None
    net: NetSample | None = None


class AgentCost(_Record):
    cpu_ms: Num | None = None
    duration_ms: Num | None = None
    max_rss_bytes: int | None = None


class Sample(_Record, tag_field="type", tag="sample"):
    schema: str
    seq: int
    ts: Num
    mono: Num | None = None
    agent: AgentCost | None = None
    probes: Probes = msgspec.field(default_factory=Probes)


class Hello(_Record, tag_field="type", tag="hello"):
    schema: str
    agent: str
    ts: Num | None = None
    interval_s: Num | None = None
    probes: list[str] = msgspec.field(default_factory=list)
    sim: int | None = None
    #: Inventory stays loosely typed: it is shown, not computed on, apart from a few
    #: fields the health rules read through ``Hello.gpu_count``.
    facts: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def gpu_count(self) -> int | None:
        gpu = self.facts.get("gpu")
        if not isinstance(gpu, dict) or "error" in gpu:
            return None
        gpus = gpu.get("gpus")
        return len(gpus) if isinstance(gpus, list) else None


Record = Hello | Sample
