"""``nvidia-smi``, the GPU probe's fallback when NVML cannot be loaded from Python.

One ``--query-gpu`` run per tick, bounded by a timeout (a wedged driver makes nvidia-smi hang,
often unkillably), in its own process group so that everything it started dies with it.
nvidia-smi cannot see XID events, so ``xid`` is always null here; NVLink is not in its CSV
queries, so ``nvlink`` is null too. Row remapping needs a second query, run at most once a
``remap_interval_s``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from tidectl.agents.probes.base import Section, error_section
from tidectl.agents.probes.gpu import fact_record, gpu_record, unreadable_gpu

_MIB = 1024 * 1024

#: What nvidia-smi prints for a value the GPU or driver does not support.
_UNSUPPORTED = frozenset(("[N/A]", "[Not Supported]", "N/A", "Not Supported", ""))

#: Record fields a query cannot do without.
_IDENTITY = frozenset(("index", "uuid", "name"))

_INVALID_FIELD = re.compile(r'Field "([^"]+)" is not a valid field to query')


def _int(text: str) -> int:
    return int(text) if text.lstrip("-").isdigit() else int(float(text))


def _mib(text: str) -> int:
    return _int(text) * _MIB


def _yes_no(text: str) -> bool:
    # --query-gpu prints Yes/No; --query-remapped-rows prints 0/1 on some drivers.
    lowered = text.lower()
    if lowered in ("yes", "1", "true", "enabled"):
        return True
    if lowered in ("no", "0", "false", "disabled"):
        return False
    raise ValueError("not yes or no")


def _text(text: str) -> str:
    return text


#: (nvidia-smi field, record field, converter). ``.``-less record names prefixed with ``_``
#: are parts of a composite field (``pcie``).
_SAMPLE_QUERY: Tuple[Tuple[str, str, Callable[[str], Any]], ...] = (
    ("index", "index", _int),
    ("uuid", "uuid", _text),
    ("name", "name", _text),
    ("driver_version", "_driver_version", _text),
    ("utilization.gpu", "util_pct", _int),
    ("utilization.memory", "mem_util_pct", _int),
    ("memory.used", "mem_used_bytes", _mib),
    ("memory.total", "mem_total_bytes", _mib),
    ("temperature.gpu", "temp_c", _int),
    ("power.draw", "power_w", float),
    ("power.limit", "power_limit_w", float),
    ("clocks.sm", "sm_clock_mhz", _int),
    ("ecc.errors.corrected.volatile.total", "ecc_sbe_volatile", _int),
    ("ecc.errors.uncorrected.volatile.total", "ecc_dbe_volatile", _int),
    ("ecc.errors.corrected.aggregate.total", "ecc_sbe_aggregate", _int),
    ("ecc.errors.uncorrected.aggregate.total", "ecc_dbe_aggregate", _int),
    ("retired_pages.sbe", "retired_pages_sbe", _int),
    ("retired_pages.dbe", "retired_pages_dbe", _int),
    ("retired_pages.pending", "retired_pages_pending", _yes_no),
    ("pcie.link.gen.current", "_pcie_gen", _int),
    ("pcie.link.gen.max", "_pcie_max_gen", _int),
    ("pcie.link.width.current", "_pcie_width", _int),
    ("pcie.link.width.max", "_pcie_max_width", _int),
)

_FACT_QUERY: Tuple[Tuple[str, str, Callable[[str], Any]], ...] = (
    ("index", "index", _int),
    ("uuid", "uuid", _text),
    ("name", "name", _text),
    ("serial", "serial", _text),
    ("pci.bus_id", "pci_bus_id", _text),
    ("memory.total", "memory_total_bytes", _mib),
    ("power.limit", "power_limit_w", float),
    ("driver_version", "_driver_version", _text),
)

_REMAP_QUERY: Tuple[Tuple[str, str, Callable[[str], Any]], ...] = (
    ("gpu_uuid", "uuid", _text),
    ("remapped_rows.correctable", "remapped_rows_correctable", _int),
    ("remapped_rows.uncorrectable", "remapped_rows_uncorrectable", _int),
    ("remapped_rows.pending", "remapped_rows_pending", _yes_no),
    ("remapped_rows.failure", "remapped_rows_failure", _yes_no),
)
_REMAP_FIELDS = tuple(record for _, record, _ in _REMAP_QUERY[1:])

_PCIE_PARTS: Tuple[Tuple[str, str], ...] = (
    ("gen", "_pcie_gen"),
    ("width", "_pcie_width"),
    ("max_gen", "_pcie_max_gen"),
    ("max_width", "_pcie_max_width"),
)


class _Failed(Exception):
    """nvidia-smi could not give an answer; ``timed_out`` when it had to be killed."""

    def __init__(self, sentence: str, timed_out: bool = False) -> None:
        super().__init__(sentence)
        self.timed_out = timed_out

    def section(self) -> Section:
        if self.timed_out:
            return error_section(str(self), timed_out=True)
        return error_section(str(self))


def parse_value(text: str, convert: Callable[[str], Any]) -> Tuple[Any, Optional[str]]:
    """(value, error sentence) of one CSV cell; "not supported" spellings are a plain None."""
    if text in _UNSUPPORTED:
        return None, None
    if text.startswith("[") and text.endswith("]"):
        return None, "nvidia-smi reported %s" % text
    try:
        return convert(text), None
    except ValueError:
        return None, "nvidia-smi printed %r, which this agent cannot read" % text


def parse_row(
    cells: List[str], query: Tuple[Tuple[str, str, Callable[[str], Any]], ...]
) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """One CSV line already split into cells, in ``query`` order: (values, errors)."""
    values: Dict[str, Any] = {}
    errors: Dict[str, str] = {}
    for position, (column, field, convert) in enumerate(query):
        value, error = parse_value(cells[position], convert)
        values[field] = value
        if error is not None:
            errors[field] = "%s: %s" % (column, error)
    return values, errors


class NvsmiSource:
    """The ``gpu`` section from ``nvidia-smi --query-gpu``. One instance per agent."""

    source = "nvidia-smi"

    def __init__(
        self,
        path: str,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        nvml_reason: Optional[str] = None,
        remap_interval_s: float = 60.0,
    ) -> None:
        self._path = path
        self._timeout_s = timeout_s
        self._clock = clock
        self._nvml_reason = nvml_reason
        self._remap_interval_s = remap_interval_s
        self._lock = threading.Lock()
        self._sample_query = list(_SAMPLE_QUERY)
        self._driver_version: Optional[str] = None
        self._known: Dict[int, Tuple[Optional[str], Optional[str]]] = {}
        self._stuck: Optional[subprocess.Popen[bytes]] = None
        self._remap_supported = True
        self._remap_at: Optional[float] = None
        self._remap: Dict[str, Tuple[Dict[str, Any], Dict[str, str]]] = {}
        self._remap_error: Optional[str] = None

    # -- running nvidia-smi ----------------------------------------------------------------

    def _run(self, args: List[str], timeout_s: float) -> Tuple[int, str]:
        """(exit status, stdout + stderr); raises _Failed on a timeout or a stuck process."""
        if self._stuck is not None:
            if self._stuck.poll() is None:
                # Never start a second one: hung nvidia-smi processes would pile up each tick.
                raise _Failed(
                    "an earlier nvidia-smi (pid %d) is still stuck after being killed, which "
                    "usually means a hung GPU driver; not starting another" % self._stuck.pid,
                    timed_out=True,
                )
            self._stuck = None
        try:
            proc = subprocess.Popen(
                [self._path, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as one
            )
        except OSError as exc:
            raise _Failed("could not run %s: %s" % (self._path, exc)) from exc
        try:
            out, err = proc.communicate(timeout=max(timeout_s, 0.01))
        except subprocess.TimeoutExpired:
            self._kill(proc)
            raise _Failed(
                "nvidia-smi did not answer within %.1f s and was killed (a hung GPU driver "
                "does this)" % timeout_s,
                timed_out=True,
            ) from None
        text = out.decode("utf-8", "replace") + err.decode("utf-8", "replace")
        return proc.returncode, text

    def _kill(self, proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(OSError):  # already gone
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.communicate(timeout=1.0)
        except subprocess.TimeoutExpired:
            # In uninterruptible sleep inside the driver: it dies when the driver lets go.
            self._stuck = proc

    def _query(
        self,
        option: str,
        query: List[Tuple[str, str, Callable[[str], Any]]],
        deadline: float,
    ) -> Tuple[int, List[str]]:
        """Run one CSV query: (exit status, output lines), dropping fields this driver lacks."""
        while True:
            fields = ",".join(column for column, _, _ in query)
            status, text = self._run(
                ["--%s=%s" % (option, fields), "--format=csv,noheader,nounits"],
                deadline - time.monotonic(),
            )
            missing = _INVALID_FIELD.search(text)
            names = [column for column, _, _ in query]
            # Matched on the text alone: the exit status of this refusal varies by version.
            if missing and missing.group(1) in names:
                position = names.index(missing.group(1))
                if query[position][1] in _IDENTITY:
                    raise _Failed("nvidia-smi does not know the field %r" % missing.group(1))
                # An older driver: ask without that field (reported as not supported) from now on.
                del query[position]
                if deadline - time.monotonic() > 0:
                    continue
                raise _Failed("nvidia-smi does not know the field %r" % missing.group(1))
            return status, [line.strip() for line in text.splitlines() if line.strip()]

    def _failure(self, status: int, lines: List[str], whole: bool = True) -> str:
        said = lines[0] if lines else "no output"
        sentence = "nvidia-smi failed (exit status %d): %s" % (status, said)
        if whole and self._nvml_reason:  # why the probe is not on NVML, for the operator
            sentence += "; NVML was not used: %s" % self._nvml_reason
        return sentence

    @staticmethod
    def _split(
        lines: List[str], width: int
    ) -> Tuple[List[List[str]], List[Tuple[int, str]], List[str]]:
        """(well-formed rows, (index, malformed line) pairs, other message lines)."""
        rows: List[List[str]] = []
        malformed: List[Tuple[int, str]] = []
        messages: List[str] = []
        for line in lines:
            cells = [cell.strip() for cell in line.split(",")]
            if len(cells) == width:
                rows.append(cells)
            elif cells[0].isdigit():
                malformed.append((int(cells[0]), line))
            else:  # "Unable to determine the device handle for GPU ...", a WARNING line...
                messages.append(line)
        return rows, malformed, messages

    # -- the records -------------------------------------------------------------------------

    def facts(self) -> Section:
        with self._lock:
            deadline = time.monotonic() + self._timeout_s
            query = list(_FACT_QUERY)
            try:
                status, lines = self._query("query-gpu", query, deadline)
            except _Failed as exc:
                return exc.section()
            rows, malformed, _ = self._split(lines, len(query))
            if status != 0 and not rows:
                if lines == ["No devices were found"]:
                    return self._facts_section([])
                return error_section(self._failure(status, lines))
            gpus = []
            for cells in rows:
                values, _ = parse_row(cells, tuple(query))
                if values.get("index") is None:
                    continue
                self._driver_version = self._driver_version or values.get("_driver_version")
                self._known[values["index"]] = (values.get("uuid"), values.get("name"))
                gpus.append(fact_record(values))
            gpus.extend(fact_record({"index": index}) for index, _ in malformed)
            gpus.sort(key=lambda gpu: int(gpu["index"]))
            return self._facts_section(gpus)

    def _facts_section(self, gpus: List[Section]) -> Section:
        return {
            "source": self.source,
            "driver_version": self._driver_version,
            "cuda_version": None,  # not among nvidia-smi's query fields
            "gpus": gpus,
        }

    def sample(self) -> Section:
        with self._lock:
            deadline = time.monotonic() + self._timeout_s
            try:
                status, lines = self._query("query-gpu", self._sample_query, deadline)
            except _Failed as exc:
                return exc.section()
            rows, malformed, messages = self._split(lines, len(self._sample_query))
            if not rows and not malformed:
                if lines == ["No devices were found"]:
                    return self._sample_section([])
                if status != 0:
                    return error_section(self._failure(status, lines))
                if not self._known:
                    return error_section(
                        "nvidia-smi printed no GPU readings: %s" % (" / ".join(lines) or "nothing")
                    )
            self._refresh_remap(deadline)
            gpus: Dict[int, Section] = {}
            for cells in rows:
                gpu = self._gpu(cells)
                if gpu is not None:
                    gpus[int(gpu["index"])] = gpu
            for index, line in malformed:
                gpus[index] = self._unreadable(
                    index,
                    "nvidia-smi printed a line that does not have %d values: %r"
                    % (len(self._sample_query), line),
                )
            # A GPU the hello listed must not vanish silently: it stays, with the reason.
            reason = "nvidia-smi printed no line for this GPU"
            if messages:
                reason += " (it said: %s)" % " / ".join(messages)
            for index in self._known:
                if index not in gpus:
                    gpus[index] = self._unreadable(index, reason)
            return self._sample_section([gpus[index] for index in sorted(gpus)])

    def _sample_section(self, gpus: List[Section]) -> Section:
        return {"source": self.source, "driver_version": self._driver_version, "gpus": gpus}

    def _unreadable(self, index: int, sentence: str) -> Section:
        uuid, name = self._known.get(index, (None, None))
        record = unreadable_gpu(index, uuid, name, sentence)
        # Not errors: nvidia-smi can never see these.
        record["field_errors"].pop("xid", None)
        record["field_errors"].pop("nvlink", None)
        return record

    def _gpu(self, cells: List[str]) -> Optional[Section]:
        values, errors = parse_row(cells, tuple(self._sample_query))
        index = values.get("index")
        if index is None:
            return None
        self._driver_version = values.pop("_driver_version", None) or self._driver_version
        errors.pop("_driver_version", None)
        uuid, name = values.get("uuid"), values.get("name")
        if index not in self._known:
            self._known[index] = (uuid, name)
        parts = {key: values.pop(part, None) for key, part in _PCIE_PARTS}
        values["pcie"] = parts if None not in parts.values() else None
        for _, part in _PCIE_PARTS:
            if part in errors:
                errors["pcie"] = errors.pop(part)
        remap_values, remap_errors = self._remap_for(uuid)
        values.update(remap_values)
        errors.update(remap_errors)
        values["xid"] = None  # nvidia-smi cannot see XID events
        values["nvlink"] = None
        return gpu_record(values, errors)

    # -- row remapping ---------------------------------------------------------------------

    def _refresh_remap(self, deadline: float) -> None:
        now = self._clock()
        due = self._remap_at is None or now - self._remap_at >= self._remap_interval_s
        if not self._remap_supported or not due or deadline - time.monotonic() <= 0:
            return
        self._remap_at = now
        query = list(_REMAP_QUERY)
        try:
            status, lines = self._query("query-remapped-rows", query, deadline)
        except _Failed as exc:
            self._remap_error = str(exc)
            return
        if status != 0:
            text = " ".join(lines).lower()
            if "invalid combination of input arguments" in text or "not a valid field" in text:
                self._remap_supported = False  # a driver from before row remapping
                self._remap = {}
                self._remap_error = None
            else:
                self._remap_error = self._failure(status, lines, whole=False)
            return
        self._remap_error = None
        self._remap = {}
        for cells in self._split(lines, len(query))[0]:
            values, errors = parse_row(cells, tuple(query))
            uuid = values.pop("uuid", None)
            if uuid is not None:
                self._remap[uuid] = (values, errors)

    def _remap_for(self, uuid: Optional[str]) -> Tuple[Dict[str, Any], Dict[str, str]]:
        if self._remap_error is not None:
            return {}, dict.fromkeys(_REMAP_FIELDS, "row remapping: %s" % self._remap_error)
        if uuid is None or uuid not in self._remap:
            return {}, {}
        return self._remap[uuid]

    def close(self) -> None:
        """Nothing is held open between runs."""
