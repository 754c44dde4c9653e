"""NVML, the GPU probe's preferred source: one session, one place that talks to ``pynvml``.

Every NVML call goes through one helper that sorts its failures the way the wire protocol
wants them: "not supported" (and a function this driver or binding lacks) is a plain null;
"GPU is lost" makes the whole GPU unreadable; any other NVML error is a null plus a sentence in
``field_errors``. Functions that exist in several versions are tried newest first, and the
first one the driver lacks is dropped for good, so the probing costs one failed call per
session. Readings that change slowly or that cost many calls (NVLink, PCIe, page retirement,
aggregate ECC) are refreshed every ``slow_interval_s``; the rest every tick.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from tidectl.agents.probes.base import Section, describe_error
from tidectl.agents.probes.gpu import fact_record, gpu_record, unreadable_gpu

#: Function families, newest version first. A driver older than the bindings lacks the new
#: ones (NVML_ERROR_FUNCTION_NOT_FOUND); older bindings lack the attribute altogether.
_VERSIONS: Dict[str, Tuple[str, ...]] = {
    "event_wait": ("nvmlEventSetWait_v2", "nvmlEventSetWait"),
    "temperature": ("nvmlDeviceGetTemperatureV", "nvmlDeviceGetTemperature"),
    "cuda_version": ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"),
}

#: Events drained per tick at most: an XID storm must not stall the tick; the rest wait.
MAX_EVENTS_PER_TICK = 256

#: Registration state of a GPU for XID events (else an error sentence).
_XID_ON = "on"
_XID_UNSUPPORTED = "unsupported"

_Reading = Tuple[Dict[str, Any], Dict[str, str]]


class NvmlUnavailable(Exception):
    """NVML cannot be used on this node; the message says why, for the no-driver sentence."""


class _GpuUnreadable(Exception):
    """One GPU cannot be read at all this tick (lost, or no handle); the message says why."""


def _watts(milliwatts: Optional[int]) -> Optional[float]:
    return None if milliwatts is None else round(milliwatts / 1000.0, 3)


def _cuda_version(number: Optional[int]) -> Optional[str]:
    # NVML encodes CUDA 12.4 as 12040.
    if number is None or number <= 0:
        return None
    return "%d.%d" % (number // 1000, (number % 1000) // 10)


def _handle_key(handle: Any) -> Optional[int]:
    """The address a device handle points at: the same for every copy of one GPU's handle.

    Event data carries a fresh ctypes pointer object, so identity cannot match it to a GPU,
    but the address it holds can, without an NVML call (which a lost GPU would refuse).
    """
    try:
        return ctypes.cast(handle, ctypes.c_void_p).value
    except (ctypes.ArgumentError, TypeError):
        return None


class NvmlSource:
    """The ``gpu`` section from NVML. Built by :meth:`open`; one instance per agent."""

    source = "nvml"

    def __init__(self, nv: Any, clock: Callable[[], float], slow_interval_s: float = 10.0) -> None:
        self._nv = nv
        self._clock = clock
        self._slow_interval_s = slow_interval_s
        self._lock = threading.Lock()
        self._error = nv.NVMLError
        self._unsupported: Set[int] = {
            nv.NVML_ERROR_NOT_SUPPORTED,
            nv.NVML_ERROR_FUNCTION_NOT_FOUND,
        }
        self._lost = nv.NVML_ERROR_GPU_IS_LOST
        self._choices: Dict[str, List[str]] = {
            family: [name for name in names if hasattr(nv, name)]
            for family, names in _VERSIONS.items()
        }
        # Session state, filled on first use under the lock.
        self._count: Optional[int] = None
        self._driver_version: Optional[str] = None
        self._cuda_version: Optional[str] = None
        self._handles: List[Any] = []
        self._identity: Dict[int, Dict[str, Any]] = {}
        self._nvlink_total: Dict[int, int] = {}
        self._pcie_max: Dict[int, Tuple[int, int]] = {}
        self._slow: Dict[int, _Reading] = {}
        self._slow_at: Optional[float] = None
        # XID events: one set for all GPUs, registered once per GPU.
        self._event_set: Any = None
        self._event_error: Optional[str] = None
        self._xid_state: Dict[int, str] = {}
        self._by_address: Dict[int, int] = {}
        self._pending: Dict[int, List[Dict[str, Any]]] = {}

    @classmethod
    def open(cls, given: Optional[object], clock: Callable[[], float]) -> NvmlSource:
        """Import ``pynvml`` (unless given a module) and initialise NVML, or say why not."""
        module: Any = given
        if module is None:
            try:
                import pynvml  # type: ignore[import-untyped,import-not-found,unused-ignore]
            except ImportError as exc:
                raise NvmlUnavailable(
                    "the pynvml module is not installed (%s)" % describe_error(exc)
                ) from exc
            module = pynvml
        try:
            module.nvmlInit()
        except Exception as exc:  # LibraryNotFound, DriverNotLoaded, a broken binding...
            raise NvmlUnavailable("nvmlInit failed: %s" % describe_error(exc)) from exc
        return cls(module, clock)

    # -- calling NVML -----------------------------------------------------------------------

    def _code(self, exc: BaseException) -> Optional[int]:
        return getattr(exc, "value", None) if isinstance(exc, self._error) else None

    def _say(self, exc: BaseException) -> str:
        """NVML's own words for its errors ("GPU is lost"); type and message for others."""
        return str(exc) if isinstance(exc, self._error) else describe_error(exc)

    def _invoke(self, name: str, *args: Any) -> Any:
        """Call ``name`` (a function or a family in ``_VERSIONS``); raises NVML errors."""
        choices = self._choices.get(name)
        if choices is None:
            function = getattr(self._nv, name, None)
            if function is None:
                raise self._error(self._nv.NVML_ERROR_FUNCTION_NOT_FOUND)
            return function(*args)
        while choices:
            try:
                return getattr(self._nv, choices[0])(*args)
            except self._error as exc:
                if self._code(exc) != self._nv.NVML_ERROR_FUNCTION_NOT_FOUND or len(choices) == 1:
                    raise
                choices.pop(0)  # this driver predates it: use the older one from now on
        raise self._error(self._nv.NVML_ERROR_FUNCTION_NOT_FOUND)

    def _call(self, errors: Dict[str, str], fields: Sequence[str], name: str, *args: Any) -> Any:
        """The value of one call, or None; errors other than "not supported" are named."""
        try:
            return self._invoke(name, *args)
        except Exception as exc:
            code = self._code(exc)
            if code in self._unsupported:
                return None
            # A family is named by the version actually called, as the driver knows it.
            label = (self._choices.get(name) or [name])[0]
            sentence = "%s failed: %s" % (label, self._say(exc))
            if code == self._lost:
                raise _GpuUnreadable(sentence) from exc
            for field in fields:
                errors[field] = sentence
            return None

    def _quiet(self, name: str, *args: Any) -> Any:
        """A value whose failure has no field to be named in (system-wide facts)."""
        return self._call({}, (), name, *args)

    # -- the session -----------------------------------------------------------------------

    def _ensure(self) -> int:
        if self._count is None:
            count = int(self._nv.nvmlDeviceGetCount())  # failing here fails the section
            self._driver_version = self._quiet("nvmlSystemGetDriverVersion")
            self._cuda_version = _cuda_version(self._quiet("cuda_version"))
            self._handles = [None] * count
            self._create_event_set()
            self._count = count
        return self._count

    def _handle(self, index: int) -> Any:
        handle = self._handles[index]
        if handle is None:
            try:
                handle = self._nv.nvmlDeviceGetHandleByIndex(index)
            except Exception as exc:
                raise _GpuUnreadable(
                    "nvmlDeviceGetHandleByIndex(%d) failed: %s" % (index, self._say(exc))
                ) from exc
            self._handles[index] = handle
            self._register_xid(index, handle)
        return handle

    def _create_event_set(self) -> None:
        try:
            self._event_set = self._invoke("nvmlEventSetCreate")
            self._event_error = None
        except Exception as exc:
            if self._code(exc) in self._unsupported:
                self._event_error = None
                self._event_set = None
                self._xid_state = dict.fromkeys(range(len(self._handles)), _XID_UNSUPPORTED)
            else:
                self._event_error = "nvmlEventSetCreate failed: %s" % self._say(exc)

    def _register_xid(self, index: int, handle: Any) -> None:
        if self._event_set is None or self._xid_state.get(index) == _XID_UNSUPPORTED:
            return
        try:
            self._nv.nvmlDeviceRegisterEvents(
                handle, self._nv.nvmlEventTypeXidCriticalError, self._event_set
            )
        except Exception as exc:
            if self._code(exc) in self._unsupported:
                self._xid_state[index] = _XID_UNSUPPORTED
            else:
                self._xid_state[index] = "nvmlDeviceRegisterEvents failed: %s" % self._say(exc)
            return
        self._xid_state[index] = _XID_ON
        address = _handle_key(handle)
        if address is not None:
            self._by_address[address] = index

    def _retry_events(self) -> None:
        """On slow ticks: retry what failed for a reason other than "not supported"."""
        if self._event_set is None and self._event_error is not None:
            self._create_event_set()
        for index, handle in enumerate(self._handles):
            state = self._xid_state.get(index)
            if handle is not None and state not in (_XID_ON, _XID_UNSUPPORTED):
                self._register_xid(index, handle)

    def _event_gpu(self, device: Any) -> Optional[int]:
        address = _handle_key(device)
        if address is not None and address in self._by_address:
            return self._by_address[address]
        try:
            return int(self._nv.nvmlDeviceGetIndex(device))
        except Exception:
            for index, handle in enumerate(self._handles):
                if handle is not None and handle is device:
                    return index
        return None

    def _drain_xids(self, now: float) -> Optional[str]:
        """Move pending XID events into ``_pending``; a sentence when the set failed."""
        if self._event_set is None or _XID_ON not in self._xid_state.values():
            return None
        xid_type = self._nv.nvmlEventTypeXidCriticalError
        for _ in range(MAX_EVENTS_PER_TICK):
            try:
                data = self._invoke("event_wait", self._event_set, 0)
            except Exception as exc:
                code = self._code(exc)
                if code == self._nv.NVML_ERROR_TIMEOUT:
                    return None  # nothing (more) pending: the normal end
                if code in self._unsupported:
                    # Registered but no wait function: XIDs are invisible to this driver.
                    for index, state in list(self._xid_state.items()):
                        if state == _XID_ON:
                            self._xid_state[index] = _XID_UNSUPPORTED
                    return None
                return "nvmlEventSetWait failed: %s" % self._say(exc)
            if int(data.eventType) != xid_type:
                continue
            gpu = self._event_gpu(data.device)
            xid = int(data.eventData)
            if gpu is None:
                return "an XID %d event came from a GPU this agent could not identify" % xid
            self._pending.setdefault(gpu, []).append({"code": xid, "ts": round(now, 3)})
        return None  # more may be queued: they come next tick

    def _xid(self, index: int, drain_error: Optional[str]) -> Tuple[Any, Optional[str]]:
        """(value, error) of one GPU's ``xid``; events are handed out once."""
        state = self._xid_state.get(index)
        if self._event_set is None:
            return None, self._event_error
        if state == _XID_ON:
            if drain_error is not None:
                return None, drain_error  # events stay pending for the next good tick
            return self._pending.pop(index, []), None
        if state is None or state == _XID_UNSUPPORTED:
            return None, None
        return None, state

    # -- readings ----------------------------------------------------------------------------

    def _read_identity(self, index: int, handle: Any, errors: Dict[str, str]) -> Dict[str, Any]:
        known = self._identity.setdefault(index, {})
        for field, name in (("uuid", "nvmlDeviceGetUUID"), ("name", "nvmlDeviceGetName")):
            if known.get(field) is None:
                known[field] = self._call(errors, (field,), name, handle)
        return known

    def _read_fast(self, handle: Any, values: Dict[str, Any], errors: Dict[str, str]) -> None:
        nv, call = self._nv, self._call
        util = call(errors, ("util_pct", "mem_util_pct"), "nvmlDeviceGetUtilizationRates", handle)
        if util is not None:
            values["util_pct"], values["mem_util_pct"] = int(util.gpu), int(util.memory)
        memory = call(
            errors, ("mem_used_bytes", "mem_total_bytes"), "nvmlDeviceGetMemoryInfo", handle
        )
        if memory is not None:
            values["mem_used_bytes"], values["mem_total_bytes"] = (
                int(memory.used),
                int(memory.total),
            )
        values["temp_c"] = call(errors, ("temp_c",), "temperature", handle, nv.NVML_TEMPERATURE_GPU)
        values["power_w"] = _watts(call(errors, ("power_w",), "nvmlDeviceGetPowerUsage", handle))
        values["sm_clock_mhz"] = call(
            errors, ("sm_clock_mhz",), "nvmlDeviceGetClockInfo", handle, nv.NVML_CLOCK_SM
        )
        for field, kind in (
            ("ecc_sbe_volatile", nv.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            ("ecc_dbe_volatile", nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
        ):
            values[field] = call(
                errors, (field,), "nvmlDeviceGetTotalEccErrors", handle, kind, nv.NVML_VOLATILE_ECC
            )

    def _read_slow(self, index: int, handle: Any) -> _Reading:
        nv, call = self._nv, self._call
        values: Dict[str, Any] = {}
        errors: Dict[str, str] = {}
        values["power_limit_w"] = _watts(
            call(errors, ("power_limit_w",), "nvmlDeviceGetEnforcedPowerLimit", handle)
        )
        for field, kind in (
            ("ecc_sbe_aggregate", nv.NVML_MEMORY_ERROR_TYPE_CORRECTED),
            ("ecc_dbe_aggregate", nv.NVML_MEMORY_ERROR_TYPE_UNCORRECTED),
        ):
            values[field] = call(
                errors, (field,), "nvmlDeviceGetTotalEccErrors", handle, kind, nv.NVML_AGGREGATE_ECC
            )
        # Page retirement is how pre-Ampere GPUs handle bad memory: NotSupported after that.
        for field, cause in (
            ("retired_pages_sbe", nv.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS),
            ("retired_pages_dbe", nv.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR),
        ):
            pages = call(errors, (field,), "nvmlDeviceGetRetiredPages", handle, cause)
            values[field] = None if pages is None else len(pages)
        pending = call(
            errors, ("retired_pages_pending",), "nvmlDeviceGetRetiredPagesPendingStatus", handle
        )
        values["retired_pages_pending"] = None if pending is None else bool(pending)
        # Row remapping replaced page retirement from Ampere on.
        remap_fields = (
            "remapped_rows_correctable",
            "remapped_rows_uncorrectable",
            "remapped_rows_pending",
            "remapped_rows_failure",
        )
        rows = call(errors, remap_fields, "nvmlDeviceGetRemappedRows", handle)
        if rows is not None:
            correctable, uncorrectable, pending_rows, failure = rows
            values.update(
                remapped_rows_correctable=int(correctable),
                remapped_rows_uncorrectable=int(uncorrectable),
                remapped_rows_pending=bool(pending_rows),
                remapped_rows_failure=bool(failure),
            )
        values["nvlink"] = self._read_nvlink(index, handle, errors)
        values["pcie"] = self._read_pcie(index, handle, errors)
        return values, errors

    def _read_nvlink(
        self, index: int, handle: Any, errors: Dict[str, str]
    ) -> Optional[Dict[str, int]]:
        """Links are counted until the driver says a link index does not exist."""
        nv = self._nv
        last = self._nvlink_total.get(index, nv.NVML_NVLINK_MAX_LINKS)
        end_codes = (nv.NVML_ERROR_NOT_SUPPORTED, nv.NVML_ERROR_INVALID_ARGUMENT)
        up = total = 0
        for link in range(last):
            try:
                state = self._invoke("nvmlDeviceGetNvLinkState", handle, link)
            except Exception as exc:
                code = self._code(exc)
                if code in end_codes or code == nv.NVML_ERROR_FUNCTION_NOT_FOUND:
                    break
                sentence = "nvmlDeviceGetNvLinkState(link %d) failed: %s" % (link, self._say(exc))
                if code == self._lost:
                    raise _GpuUnreadable(sentence) from exc
                errors["nvlink"] = sentence
                return None
            total += 1
            up += 1 if state == nv.NVML_FEATURE_ENABLED else 0
        self._nvlink_total.setdefault(index, total)
        return {"up": up, "total": total} if total else None

    def _read_pcie(
        self, index: int, handle: Any, errors: Dict[str, str]
    ) -> Optional[Dict[str, int]]:
        call = self._call
        gen = call(errors, ("pcie",), "nvmlDeviceGetCurrPcieLinkGeneration", handle)
        width = call(errors, ("pcie",), "nvmlDeviceGetCurrPcieLinkWidth", handle)
        maximum = self._pcie_max.get(index)
        if maximum is None:  # what the slot and card can do never changes
            max_gen = call(errors, ("pcie",), "nvmlDeviceGetMaxPcieLinkGeneration", handle)
            max_width = call(errors, ("pcie",), "nvmlDeviceGetMaxPcieLinkWidth", handle)
            if max_gen is not None and max_width is not None:
                maximum = self._pcie_max[index] = (int(max_gen), int(max_width))
        if gen is None or width is None or maximum is None:
            return None
        return {
            "gen": int(gen),
            "width": int(width),
            "max_gen": maximum[0],
            "max_width": maximum[1],
        }

    # -- the records -------------------------------------------------------------------------

    def facts(self) -> Section:
        with self._lock:
            count = self._ensure()
            return {
                "source": self.source,
                "driver_version": self._driver_version,
                "cuda_version": self._cuda_version,
                "gpus": [self._gpu_facts(index) for index in range(count)],
            }

    def _gpu_facts(self, index: int) -> Section:
        # The hello has no field_errors: a fact that failed is null, and the same failure
        # shows, named, in every sample.
        ignored: Dict[str, str] = {}
        try:
            handle = self._handle(index)
            values: Dict[str, Any] = {"index": index}
            values.update(self._read_identity(index, handle, ignored))
            values["serial"] = self._call(ignored, (), "nvmlDeviceGetSerial", handle)
            pci = self._call(ignored, (), "nvmlDeviceGetPciInfo", handle)
            values["pci_bus_id"] = None if pci is None else str(pci.busId)
            memory = self._call(ignored, (), "nvmlDeviceGetMemoryInfo", handle)
            values["memory_total_bytes"] = None if memory is None else int(memory.total)
            values["power_limit_w"] = _watts(
                self._call(ignored, (), "nvmlDeviceGetEnforcedPowerLimit", handle)
            )
            nvlink = self._read_nvlink(index, handle, ignored)
            values["nvlink_count"] = None if nvlink is None else nvlink["total"]
        except _GpuUnreadable:
            values = {"index": index}
            values.update(self._identity.get(index, {}))
        return fact_record(values)

    def sample(self) -> Section:
        with self._lock:
            count = self._ensure()
            now = self._clock()
            slow_due = self._slow_at is None or now - self._slow_at >= self._slow_interval_s
            if slow_due:
                self._slow_at = now
                self._retry_events()
            drain_error = self._drain_xids(now)
            gpus = [self._gpu_sample(index, slow_due, drain_error) for index in range(count)]
            return {"source": self.source, "driver_version": self._driver_version, "gpus": gpus}

    def _gpu_sample(self, index: int, slow_due: bool, drain_error: Optional[str]) -> Section:
        errors: Dict[str, str] = {}
        try:
            handle = self._handle(index)
            values: Dict[str, Any] = {"index": index}
            values.update(self._read_identity(index, handle, errors))
            self._read_fast(handle, values, errors)
            if slow_due or index not in self._slow:
                self._slow[index] = self._read_slow(index, handle)
        except _GpuUnreadable as exc:
            self._slow.pop(index, None)
            xid, _ = self._xid(index, drain_error)
            known = self._identity.get(index, {})
            record = unreadable_gpu(index, known.get("uuid"), known.get("name"), str(exc))
            if xid:  # an XID (79: fallen off the bus) is the best clue to why it is lost
                record["xid"] = xid
                del record["field_errors"]["xid"]
            return record
        slow_values, slow_errors = self._slow[index]
        values.update(slow_values)
        errors.update(slow_errors)
        xid, xid_error = self._xid(index, drain_error)
        values["xid"] = xid
        if xid_error is not None:
            errors["xid"] = xid_error
        return gpu_record(values, errors)

    def close(self) -> None:
        with self._lock:
            if self._event_set is not None:
                with contextlib.suppress(Exception):  # best effort: the agent is stopping
                    self._nv.nvmlEventSetFree(self._event_set)
                self._event_set = None
            with contextlib.suppress(Exception):
                self._nv.nvmlShutdown()
