"""The few figures of a node's latest sample that its line in the fleet table shows.

``figures_of`` reads each section once: GPUs (how many, mean utilisation, memory used, the
hottest), IB ports (up, in all) and the fullest filesystem. The fleet keeps them per node
(``NodeState.figures``) so that a table of a thousand nodes fed by collector workers reads
these few numbers, which the workers send, instead of decoding every sample.
"""

from __future__ import annotations

from typing import NamedTuple

from tidectl.console.health import IB_ACTIVE
from tidectl.console.schema import Gpu, Sample

__all__ = ["NO_FIGURES", "SampleFigures", "figures_of"]


class SampleFigures(NamedTuple):
    """``None``: not known (no sample, a failed probe)."""

    gpus: int | None = None
    util_pct: float | None = None  # mean over the node's GPUs
    mem_pct: float | None = None  # GPU memory used over total, all GPUs
    hottest_c: float | None = None
    ib_up: int | None = None
    ib_total: int | None = None
    fs_pct: float | None = None  # the fullest filesystem's Use%
    fs_mount: str | None = None


NO_FIGURES = SampleFigures()


def figures_of(sample: Sample | None) -> SampleFigures:
    if sample is None:
        return NO_FIGURES
    gpus = util = mem = hottest = None
    ib_up = ib_total = None
    fs_pct: float | None = None
    fs_mount: str | None = None
    probes = sample.probes
    gpu = probes.gpu
    if gpu is not None and gpu.error is None:
        gpus, util, mem, hottest = _gpu_figures(gpu.gpus)
    ib = probes.ib
    if ib is not None and ib.error is None:
        ib_total = len(ib.ports)
        ib_up = sum(1 for port in ib.ports if port.state == IB_ACTIVE)
    storage = probes.storage
    if storage is not None and storage.error is None:
        for mount in storage.mounts:
            used = mount.used_fraction
            if used is not None and (fs_pct is None or used * 100.0 > fs_pct):
                fs_pct, fs_mount = used * 100.0, mount.mountpoint
    return SampleFigures(gpus, util, mem, hottest, ib_up, ib_total, fs_pct, fs_mount)


def _gpu_figures(gpus: list[Gpu]) -> tuple[int, float | None, float | None, float | None]:
    utils: list[float] = []
    used = total = 0
    hottest: float | None = None
    for gpu in gpus:
        if gpu.util_pct is not None:
            utils.append(gpu.util_pct)
        if gpu.mem_used_bytes is not None and gpu.mem_total_bytes:
            used += gpu.mem_used_bytes
            total += gpu.mem_total_bytes
        temp = gpu.temp_c
        if temp is not None and (hottest is None or temp > hottest):
            hottest = temp
    return (
        len(gpus),
        sum(utils) / len(utils) if utils else None,
        used / total * 100.0 if total else None,
        hottest,
    )
