"""Health thresholds: the numbers behind each health rule, overridable in ``[health]``."""

from __future__ import annotations

from dataclasses import dataclass, field

# XIDs that mean the GPU or its memory needs attention (NVIDIA's XID catalogue): double-bit
# ECC (48), row remapping (63, 64), NVLink (74), fallen off the bus (79), contained and
# uncontained ECC (94, 95), GSP errors (119, 120), and others that need a reset. Anything
# else (13, 31, 43, 45: usually the application's own fault) is a warning.
DEFAULT_XID_CRITICAL = (48, 61, 62, 63, 64, 74, 79, 92, 94, 95, 119, 120)


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    gpu_temp_warn_c: float = 85.0
    gpu_temp_critical_c: float = 92.0
    #: Drawing more than this fraction of the enforced power limit (a sign of bad telemetry
    #: or a limit set below what the job needs, which throttles it).
    gpu_power_warn_fraction: float = 1.02
    gpu_ecc_sbe_warn_per_hour: float = 100.0
    #: An XID keeps its finding this long after it was seen (they are one-shot events).
    xid_hold_s: float = 600.0
    xid_critical_codes: tuple[int, ...] = DEFAULT_XID_CRITICAL
    xid_ignored_codes: tuple[int, ...] = ()
    ib_symbol_errors_warn_per_min: float = 10.0
    ib_symbol_errors_critical_per_min: float = 1000.0
    ib_rcv_errors_warn_per_min: float = 10.0
    #: A link_downed increment keeps its finding this long (the port may be back up).
    ib_link_downed_hold_s: float = 600.0
    storage_full_warn_pct: float = 90.0
    storage_full_critical_pct: float = 97.0
    net_errors_warn_per_min: float = 100.0
    #: No sample for this many agent intervals makes the node's health unknown.
    stale_after_intervals: float = 3.0
    #: Codes listed here are never reported (a fleet-wide known issue being worked on).
    muted_codes: tuple[str, ...] = field(default=())
