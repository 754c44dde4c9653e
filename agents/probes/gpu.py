"""The ``gpu`` probe: NVML when it loads, else ``nvidia-smi``, else a clear "no driver" result.

The source is chosen once, on the first call, and kept for the agent's life: the hello's
``facts`` and every sample then speak about the same GPUs through the same source. This module
also owns the shape of a GPU's record, so both sources produce exactly the same fields.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple, Union

from tidectl.agents.probes.base import Probe, Section

if TYPE_CHECKING:
    from tidectl.agents.probes.nvml import NvmlSource
    from tidectl.agents.probes.nvsmi import NvsmiSource

#: The fields of one GPU in a sample, in record order (docs/agent-protocol.md, ``gpu``).
GPU_FIELDS: Tuple[str, ...] = (
    "index",
    "uuid",
    "name",
    "util_pct",
    "mem_util_pct",
    "mem_used_bytes",
    "mem_total_bytes",
    "temp_c",
    "power_w",
    "power_limit_w",
    "sm_clock_mhz",
    "ecc_sbe_volatile",
    "ecc_dbe_volatile",
    "ecc_sbe_aggregate",
    "ecc_dbe_aggregate",
    "retired_pages_sbe",
    "retired_pages_dbe",
    "retired_pages_pending",
    "remapped_rows_correctable",
    "remapped_rows_uncorrectable",
    "remapped_rows_pending",
    "remapped_rows_failure",
    "xid",
    "nvlink",
    "pcie",
    "field_errors",
)

#: The fields that carry readings (everything but identity and ``field_errors``).
READING_FIELDS: Tuple[str, ...] = GPU_FIELDS[3:-1]

#: The fields of one GPU in the hello's facts, in record order.
FACT_FIELDS: Tuple[str, ...] = (
    "index",
    "uuid",
    "name",
    "serial",
    "pci_bus_id",
    "memory_total_bytes",
    "power_limit_w",
    "nvlink_count",
)


def gpu_record(values: Dict[str, Any], errors: Dict[str, str]) -> Section:
    """One GPU of a sample: every field present, in order, unknown ones null."""
    record: Section = {name: values.get(name) for name in GPU_FIELDS[:-1]}
    record["field_errors"] = errors
    return record


def unreadable_gpu(index: int, uuid: Optional[str], name: Optional[str], sentence: str) -> Section:
    """A GPU that could not be read at all (lost, fallen off the bus, no handle).

    It stays in the list, named by what the hello said about it, with every reading null and
    named in ``field_errors``: dropping it would hide the one GPU an operator must look at.
    """
    errors = dict.fromkeys(READING_FIELDS, sentence)
    return gpu_record({"index": index, "uuid": uuid, "name": name}, errors)


def fact_record(values: Dict[str, Any]) -> Section:
    """One GPU of the hello's facts: every field present, in order."""
    return {name: values.get(name) for name in FACT_FIELDS}


def no_driver_section(nvml_reason: str, nvidia_smi: str) -> Section:
    """The documented section for a node where neither NVML nor nvidia-smi is usable."""
    sentence = (
        "No NVIDIA driver found: NVML could not be used (%s) and %r is not on PATH. "
        "Install the NVIDIA driver (it provides libnvidia-ml.so.1 and nvidia-smi) and, for "
        "the faster NVML path, the nvidia-ml-py package (module pynvml); a node without "
        "GPUs needs neither." % (nvml_reason, nvidia_smi)
    )
    return {"source": None, "gpus": [], "no_driver": sentence}


class GpuProbe(Probe):
    """GPU health through NVML (preferred), ``nvidia-smi`` (fallback), or neither.

    ``nvml`` is a pynvml-like module (a fake in tests); None imports the real ``pynvml``
    lazily. ``nvidia_smi`` is looked up on PATH when NVML is unusable. ``timeout_s`` bounds
    each nvidia-smi run; keep it below the tick's budget.
    """

    name = "gpu"

    def __init__(
        self,
        nvml: Optional[object] = None,
        nvidia_smi: str = "nvidia-smi",
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._nvml_module = nvml
        self._nvidia_smi = nvidia_smi
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._chosen = False
        self._source: Optional[Union[NvmlSource, NvsmiSource]] = None
        self._nvml_reason = ""  # why NVML was not used, once chosen

    @property
    def source_name(self) -> Optional[str]:
        """``"nvml"``, ``"nvidia-smi"`` or None, once the first call has chosen."""
        self._choose()
        return self._source.source if self._source is not None else None

    def _choose(self) -> None:
        with self._lock:
            if self._chosen:
                return
            # Imported here, not at the top: both sources import this module's record shape.
            from tidectl.agents.probes.nvml import NvmlSource, NvmlUnavailable
            from tidectl.agents.probes.nvsmi import NvsmiSource

            try:
                self._source = NvmlSource.open(self._nvml_module, clock=self._clock)
            except NvmlUnavailable as exc:
                self._nvml_reason = str(exc)
                path = shutil.which(self._nvidia_smi)  # PATH order: a test's fake comes first
                if path is not None:
                    self._source = NvsmiSource(
                        path, timeout_s=self._timeout_s, clock=self._clock, nvml_reason=str(exc)
                    )
            self._chosen = True

    def facts(self) -> Section:
        self._choose()
        if self._source is None:
            return no_driver_section(self._nvml_reason, self._nvidia_smi)
        return self._source.facts()

    def sample(self) -> Section:
        self._choose()
        if self._source is None:
            return no_driver_section(self._nvml_reason, self._nvidia_smi)
        return self._source.sample()

    def close(self) -> None:
        with self._lock:
            if self._source is not None:
                self._source.close()
