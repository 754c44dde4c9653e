"""A fake NVML: the ``pynvml`` functions the GPU probe calls, over simulated GPUs.

It is built on the real ``pynvml`` (nvidia-ml-py) so that what the probe sees is what the real
bindings give it: the real constants, the real exception classes (``NVMLError(code)`` becomes
``NVMLError_GpuIsLost`` and friends, with NVML's own messages), the real ctypes structures as
return values (``c_nvmlMemory_t``, ``c_nvmlUtilization_t``, ``nvmlPciInfo_t``,
``c_nvmlEventData_t``), and real ctypes device handles, so that the handle inside an event is,
as with the real library, a different Python object from the one ``nvmlDeviceGetHandleByIndex``
returned. Signatures follow pynvml's.

Failures are injected per GPU and per function name (``FakeGpu.errors``), as a lost GPU
(``FakeGpu.lost``), or as functions an older driver lacks (``FakeNvml.missing``).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import pynvml  # type: ignore[import-untyped]

MIB = 1024 * 1024
_XID = pynvml.nvmlEventTypeXidCriticalError
_CORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED
_UNCORRECTED = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
_VOLATILE = pynvml.NVML_VOLATILE_ECC
_AGGREGATE = pynvml.NVML_AGGREGATE_ECC
_SBE_CAUSE = pynvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
_DBE_CAUSE = pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR


def _ecc(
    sbe_v: int = 0, dbe_v: int = 0, sbe_a: int = 0, dbe_a: int = 0
) -> dict[tuple[int, int], int]:
    return {
        (_CORRECTED, _VOLATILE): sbe_v,
        (_UNCORRECTED, _VOLATILE): dbe_v,
        (_CORRECTED, _AGGREGATE): sbe_a,
        (_UNCORRECTED, _AGGREGATE): dbe_a,
    }


@dataclass
class FakeGpu:
    """One simulated GPU, in NVML's units (bytes, milliwatts, MHz, °C)."""

    uuid: str = "GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e80"
    name: str = "NVIDIA H100 80GB HBM3"
    serial: str = "1654922001234"
    bus_id: str = "00000000:18:00.0"
    memory_total: int = 81559 * MIB
    memory_used: int = 61234 * MIB
    util_gpu: int = 87
    util_memory: int = 41
    temperature: int = 54
    power_mw: int = 412345
    power_limit_mw: int = 700000
    sm_clock: int = 1980
    ecc: dict[tuple[int, int], int] = field(default_factory=lambda: _ecc(3, 0, 17, 0))
    #: Retired page addresses by cause; NVML says NotSupported on Ampere and newer.
    retired_pages: dict[int, list[int]] | None = None
    retired_pending: int = 0
    #: (correctable, uncorrectable, pending, failure); None: NotSupported (pre-Ampere).
    remapped_rows: tuple[int, int, int, int] | None = (2, 0, 0, 0)
    #: State of each link (1 up, 0 down); None: the GPU has no NVLink.
    nvlink: list[int] | None = field(default_factory=lambda: [1] * 18)
    #: (current gen, current width, max gen, max width)
    pcie: tuple[int, int, int, int] = (5, 16, 5, 16)
    #: Function name -> NVML error code that call raises for this GPU.
    errors: dict[str, int] = field(default_factory=dict)
    #: Every device call raises NVML_ERROR_GPU_IS_LOST (fallen off the bus).
    lost: bool = False


def h100(index: int = 0) -> FakeGpu:
    """An H100 SXM: row remapping, 18 NVLinks, PCIe Gen5 x16."""
    return FakeGpu(
        uuid=f"GPU-5a3c6f1e-8d2b-4c7a-9e10-3f4b5c6d7e8{index}",
        serial=f"165492200123{index}",
        bus_id=f"00000000:{0x18 + 0x10 * index:02X}:00.0",
    )


def v100(index: int = 0) -> FakeGpu:
    """A V100: page retirement instead of row remapping, 6 NVLinks, PCIe Gen3."""
    return FakeGpu(
        uuid=f"GPU-0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f{index}",
        name="Tesla V100-SXM2-32GB",
        serial=f"032301900456{index}",
        bus_id=f"00000000:{0x1A + index:02X}:00.0",
        memory_total=32768 * MIB,
        memory_used=1024 * MIB,
        power_mw=65432,
        power_limit_mw=300000,
        sm_clock=1530,
        ecc=_ecc(0, 0, 5, 1),
        retired_pages={_SBE_CAUSE: [0x1F000, 0x2A000], _DBE_CAUSE: [0x3B000]},
        retired_pending=1,
        remapped_rows=None,
        nvlink=[1, 1, 1, 1, 1, 0],
        pcie=(3, 16, 3, 16),
    )


class FakeNvml:
    """Stands in for the ``pynvml`` module. Pass it as ``GpuProbe(nvml=FakeNvml(...))``."""

    NVMLError = pynvml.NVMLError

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        driver_version: str = "550.54.15",
        cuda_version: int = 12040,
        init_error: int | None = None,
        missing: set[str] | None = None,
        handle_errors: dict[int, int] | None = None,
    ) -> None:
        self.gpus = gpus if gpus is not None else [h100(0), h100(1)]
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.init_error = init_error
        #: Functions this (older) driver lacks: they raise NVML_ERROR_FUNCTION_NOT_FOUND.
        self.missing = set(missing or ())
        #: Index -> error code nvmlDeviceGetHandleByIndex raises.
        self.handle_errors = dict(handle_errors or {})
        self.initialized = 0
        self.calls: list[str] = []
        self.wait_timeouts: list[int] = []
        # Real ctypes handles, kept alive here; an event carries a new pointer to the same one.
        self._devices = [pynvml.struct_c_nvmlDevice_t() for _ in self.gpus]
        self._event_sets: dict[int, dict[str, Any]] = {}
        self._set_objects: list[Any] = []

    # -- plumbing --------------------------------------------------------------------------

    def _enter(self, name: str) -> None:
        self.calls.append(name)
        if name in self.missing:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)
        if self.initialized <= 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    def _gpu(self, name: str, handle: Any) -> FakeGpu:
        self._enter(name)
        address = ctypes.cast(handle, ctypes.c_void_p).value
        for position, device in enumerate(self._devices):
            gpu = self.gpus[position]
            if ctypes.addressof(device) == address:
                if gpu.lost:
                    raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
                if name in gpu.errors:
                    raise pynvml.NVMLError(gpu.errors[name])
                return gpu
        raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def count(self, name: str) -> int:
        """How many times the probe called ``name``."""
        return self.calls.count(name)

    def inject_xid(self, index: int, code: int) -> None:
        """An XID on GPU ``index``: queued in every event set that registered it for XIDs."""
        for event_set in self._event_sets.values():
            if index in event_set["registered"]:
                data = pynvml.c_nvmlEventData_t()
                data.device = ctypes.pointer(self._devices[index])
                data.eventType = _XID
                data.eventData = code
                event_set["queue"].append(data)

    # -- library and system ----------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialized -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        self._enter("nvmlDeviceGetHandleByIndex")
        if index in self.handle_errors:
            raise pynvml.NVMLError(self.handle_errors[index])
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return ctypes.pointer(self._devices[index])

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        gpu = self._gpu("nvmlDeviceGetIndex", handle)
        return self.gpus.index(gpu)

    # -- identity --------------------------------------------------------------------------

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._gpu("nvmlDeviceGetUUID", handle).uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu("nvmlDeviceGetName", handle).name

    def nvmlDeviceGetSerial(self, handle: Any) -> str:
        return self._gpu("nvmlDeviceGetSerial", handle).serial

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        gpu = self._gpu("nvmlDeviceGetPciInfo", handle)
        info = pynvml.nvmlPciInfo_t()
        info.busId = gpu.bus_id
        info.busIdLegacy = gpu.bus_id
        domain, bus, rest = gpu.bus_id.split(":")
        info.domain, info.bus, info.device = int(domain, 16), int(bus, 16), int(rest[:2], 16)
        return info

    # -- gauges ----------------------------------------------------------------------------

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        gpu = self._gpu("nvmlDeviceGetMemoryInfo", handle)
        used = gpu.memory_used
        return pynvml.c_nvmlMemory_t(
            total=gpu.memory_total, free=gpu.memory_total - used, used=used
        )

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        gpu = self._gpu("nvmlDeviceGetUtilizationRates", handle)
        return pynvml.c_nvmlUtilization_t(gpu=gpu.util_gpu, memory=gpu.util_memory)

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperature", handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature

    def nvmlDeviceGetTemperatureV(
        self, handle: Any, sensor: int, version: int = pynvml.nvmlTemperature_v1
    ) -> int:
        gpu = self._gpu("nvmlDeviceGetTemperatureV", handle)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetPowerUsage", handle).power_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetEnforcedPowerLimit", handle).power_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetPowerManagementLimit", handle).power_limit_mw

    def nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:
        gpu = self._gpu("nvmlDeviceGetClockInfo", handle)
        if type != pynvml.NVML_CLOCK_SM:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu.sm_clock

    # -- memory errors ---------------------------------------------------------------------

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, errorType: int, counterType: int) -> int:
        gpu = self._gpu("nvmlDeviceGetTotalEccErrors", handle)
        return gpu.ecc[(errorType, counterType)]

    def nvmlDeviceGetRetiredPages(self, device: Any, sourceFilter: int) -> list[int]:
        gpu = self._gpu("nvmlDeviceGetRetiredPages", device)
        if gpu.retired_pages is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return list(gpu.retired_pages.get(sourceFilter, []))

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: Any) -> int:
        gpu = self._gpu("nvmlDeviceGetRetiredPagesPendingStatus", device)
        if gpu.retired_pages is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu.retired_pending

    def nvmlDeviceGetRemappedRows(self, device: Any) -> tuple[int, int, int, int]:
        gpu = self._gpu("nvmlDeviceGetRemappedRows", device)
        if gpu.remapped_rows is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu.remapped_rows

    # -- links -----------------------------------------------------------------------------

    def nvmlDeviceGetNvLinkState(self, device: Any, link: int) -> int:
        gpu = self._gpu("nvmlDeviceGetNvLinkState", device)
        if gpu.nvlink is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if not 0 <= link < len(gpu.nvlink):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.nvlink[link]

    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetCurrPcieLinkGeneration", handle).pcie[0]

    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetCurrPcieLinkWidth", handle).pcie[1]

    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetMaxPcieLinkGeneration", handle).pcie[2]

    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: Any) -> int:
        return self._gpu("nvmlDeviceGetMaxPcieLinkWidth", handle).pcie[3]

    # -- events ----------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> Any:
        self._enter("nvmlEventSetCreate")
        handle = pynvml.struct_c_nvmlEventSet_t()
        self._set_objects.append(handle)
        self._event_sets[ctypes.addressof(handle)] = {"registered": set(), "queue": []}
        return ctypes.pointer(handle)

    def _event_set(self, event_set: Any) -> dict[str, Any]:
        key = ctypes.cast(event_set, ctypes.c_void_p).value
        if key not in self._event_sets:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._event_sets[key]

    def nvmlDeviceRegisterEvents(self, handle: Any, eventTypes: int, eventSet: Any) -> None:
        gpu = self._gpu("nvmlDeviceRegisterEvents", handle)
        if eventTypes & _XID:
            self._event_set(eventSet)["registered"].add(self.gpus.index(gpu))

    def _wait(self, name: str, event_set: Any, timeoutms: int) -> Any:
        self._enter(name)
        self.wait_timeouts.append(timeoutms)
        queue = self._event_set(event_set)["queue"]
        if not queue:
            # The real call would block up to timeoutms first; tests only ever pass 0.
            raise pynvml.NVMLError(pynvml.NVML_ERROR_TIMEOUT)
        return queue.pop(0)

    def nvmlEventSetWait_v2(self, eventSet: Any, timeoutms: int) -> Any:
        return self._wait("nvmlEventSetWait_v2", eventSet, timeoutms)

    def nvmlEventSetWait(self, eventSet: Any, timeoutms: int) -> Any:
        # As in bindings before the _v2 variant: the original C entry point.
        return self._wait("nvmlEventSetWait", eventSet, timeoutms)

    def nvmlEventSetFree(self, eventSet: Any) -> None:
        self._enter("nvmlEventSetFree")
        key = ctypes.cast(eventSet, ctypes.c_void_p).value
        if key is None or self._event_sets.pop(key, None) is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)


# The real constants and exception classes, as the module has them (NVML_ERROR_*, NVMLError_*,
# nvmlEventType*, NVML_*): the probe reads them from whatever module it is given.
for _name in dir(pynvml):
    if _name.startswith(("NVML_", "NVMLError", "nvmlEventType", "nvmlTemperature_v")):
        setattr(FakeNvml, _name, getattr(pynvml, _name))
