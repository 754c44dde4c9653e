"""Which probes exist, and how to build them from the command line's options."""

from __future__ import annotations

from typing import List, Optional, Sequence

from tidectl.agents.probes.base import Probe, Section, describe_error, error_section

#: Every probe, in the order sections appear in records.
PROBE_NAMES = ("host", "gpu", "ib", "storage", "net")


class UnknownProbeError(ValueError):
    """A ``--probes`` list named a probe that does not exist."""


def parse_probe_list(text: Optional[str]) -> List[str]:
    """``"gpu,ib"`` → ``["gpu", "ib"]`` in record order; None or ``"all"`` → every probe."""
    if text is None or text.strip() in ("", "all"):
        return list(PROBE_NAMES)
    wanted = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in wanted if name not in PROBE_NAMES]
    if unknown:
        raise UnknownProbeError(
            "unknown probe %s; choose from %s"
            % (", ".join(repr(name) for name in unknown), ",".join(PROBE_NAMES))
        )
    return [name for name in PROBE_NAMES if name in wanted]


def build_probes(
    names: Sequence[str],
    *,
    sysfs_root: str = "/sys",
    proc_root: str = "/proc",
    sim_seed: Optional[int] = None,
    faults_path: Optional[str] = None,
    hostname: Optional[str] = None,
    interval_s: float = 1.0,
) -> List[Probe]:
    """The probes named, real or (with ``sim_seed``) simulated, in record order.

    Modules are imported here, not at the top, so ``--probes ib`` never pays for importing
    the GPU probe (and a broken optional library cannot stop the others).
    """
    if sim_seed is not None:
        try:
            from tidectl.agents.probes.sim import make_sim_probes

            sims = make_sim_probes(sim_seed, hostname=hostname, faults_path=faults_path)
        except Exception as exc:
            return [BrokenProbe(name, describe_error(exc)) for name in PROBE_NAMES if name in names]
        return [probe for probe in sims if probe.name in names]
    probes: List[Probe] = []
    for name in PROBE_NAMES:
        if name not in names:
            continue
        try:
            probes.append(_build_one(name, sysfs_root, proc_root, interval_s))
        except Exception as exc:  # one broken probe must not stop the others
            probes.append(BrokenProbe(name, describe_error(exc)))
    return probes


class BrokenProbe(Probe):
    """Stands in for a probe whose construction failed, and says so every tick."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = "%s probe could not start: %s" % (name, reason)

    def facts(self) -> Section:
        return error_section(self.reason)

    def sample(self) -> Section:
        return error_section(self.reason)


def _build_one(name: str, sysfs_root: str, proc_root: str, interval_s: float) -> Probe:
    if name == "host":
        from tidectl.agents.probes.host import HostProbe

        return HostProbe(proc_root=proc_root)
    if name == "gpu":
        from tidectl.agents.probes.gpu import GpuProbe

        # A hung nvidia-smi is killed before the tick's budget runs out, so the probe can
        # say why itself instead of only timing out. A node whose nvidia-smi is slower than
        # that needs a longer --interval (the NVML path has no such cost).
        return GpuProbe(timeout_s=0.7 * interval_s)
    if name == "ib":
        from tidectl.agents.probes.ib import IbProbe

        return IbProbe(sysfs_root=sysfs_root)
    if name == "storage":
        from tidectl.agents.probes.storage import StorageProbe

        return StorageProbe(proc_root=proc_root)
    if name == "net":
        from tidectl.agents.probes.net import NetProbe

        return NetProbe(proc_root=proc_root, sysfs_root=sysfs_root)
    raise UnknownProbeError("unknown probe %r" % name)
