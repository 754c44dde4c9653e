"""The ``host`` section: CPU, memory, load, uptime and process counts.

Read from /proc by default, or through ``psutil`` when it is installed: both paths give the
same keys, types and units, so a console cannot tell them apart. Each group of fields comes
from one file; a file that fails nulls its fields and names them in ``field_errors`` (present
only when something failed), and only when every file fails does the section fail.
"""

from __future__ import annotations

import importlib
import os
import platform
import shlex
import socket
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tidectl.agents.probes.base import Probe, Section, describe_error
from tidectl.agents.probes.fsread import HeldFile, read_all, read_optional, read_text

#: The keys of a sample, in wire order.
SAMPLE_FIELDS = (
    "cpu_pct",
    "cpu_count",
    "load1",
    "load5",
    "load15",
    "mem_total_bytes",
    "mem_available_bytes",
    "swap_total_bytes",
    "swap_used_bytes",
    "uptime_s",
    "procs",
    "procs_running",
)


#: Counting processes lists /proc, which costs the kernel about a microsecond per process
#: (milliseconds on a busy node): the count is refreshed every this many samples.
PROCS_EVERY = 10


def _after(data: bytes, key: bytes) -> Optional[bytes]:
    """The rest of the line that starts with ``key``, or None."""
    if data.startswith(key):
        start = len(key)
    else:
        start = data.find(b"\n" + key)
        if start < 0:
            return None
        start += len(key) + 1
    end = data.find(b"\n", start)
    return data[start:] if end < 0 else data[start:end]


class ProcStat:
    """What one read of /proc/stat gives: CPU times, online CPUs, running tasks, boot time."""

    __slots__ = ("btime", "busy", "cpu_count", "procs_running", "total")

    def __init__(self, data: bytes) -> None:
        first = data[: data.find(b"\n")].split()
        if not first or first[0] != b"cpu":
            raise ValueError("/proc/stat does not start with the aggregate cpu line")
        # user nice system idle iowait irq softirq steal: guest and guest_nice are already
        # counted in user and nice, so they are left out of the total (as psutil and htop do).
        ticks = [int(v) for v in first[1:9]]
        self.total = sum(ticks)
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        self.busy = self.total - idle
        self.cpu_count = data.count(b"\ncpu")
        running = _after(data, b"procs_running ")
        self.procs_running = int(running) if running is not None else None
        btime = _after(data, b"btime ")
        self.btime = int(btime) if btime is not None else None


def meminfo_bytes(data: bytes, key: bytes) -> Optional[int]:
    """One ``Key:  N kB`` value of /proc/meminfo, in bytes; None when the key is absent."""
    rest = _after(data, key + b":")
    if rest is None:
        return None
    return int(rest.split()[0]) * 1024


def meminfo_values(data: bytes, keys: Sequence[bytes]) -> List[Optional[int]]:
    """Several ``Key:  N kB`` values of /proc/meminfo in bytes, in one call (None for a key
    that is absent): the sample wants four, and every call costs at 1 Hz."""
    values: List[Optional[int]] = []
    for key in keys:
        rest = _after(data, key + b":")
        values.append(int(rest.split()[0]) * 1024 if rest is not None else None)
    return values


_MEMINFO_KEYS = (b"MemTotal", b"MemAvailable", b"SwapTotal", b"SwapFree")


def cpu_pct(prev: Optional[Tuple[float, float]], now: Tuple[float, float]) -> Optional[float]:
    """Busy share of all CPUs between two (busy, total) readings; None without a previous one."""
    if prev is None:
        return None
    d_total = now[1] - prev[1]
    if d_total <= 0:
        return None  # same jiffy, or counters went back (CPU hot-unplug): no honest answer
    pct = 100.0 * (now[0] - prev[0]) / d_total
    return round(min(100.0, max(0.0, pct)), 1)


def os_pretty_name(etc_root: str) -> Optional[str]:
    """PRETTY_NAME from os-release(5): ``<etc>/os-release``, else ``/usr/lib/os-release``
    (found as ``<etc>/../usr/lib/os-release``, so a fake root works alike)."""
    for path in (
        os.path.join(etc_root, "os-release"),
        os.path.join(etc_root, os.pardir, "usr", "lib", "os-release"),
    ):
        text = read_optional(path)
        if text is None:
            continue
        for line in text.splitlines():
            if line.startswith("PRETTY_NAME="):
                value = line[len("PRETTY_NAME=") :]
                try:
                    return " ".join(shlex.split(value)) or None
                except ValueError:  # unbalanced quotes: keep the text as written
                    return value.strip("\"'") or None
        return None
    return None


def cpu_model(cpuinfo: str) -> Optional[str]:
    """The CPU's name: ``model name`` (x86), else ``Processor`` (old ARM) or ``cpu`` (POWER).

    arm64 kernels print no name at all, only implementer/part numbers: then None.
    """
    found: Dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key in ("model name", "Processor", "cpu") and key not in found:
            found[key] = value.strip()
            if key == "model name":
                break
    for key in ("model name", "Processor", "cpu"):
        if found.get(key):
            return found[key]
    return None


def _load_psutil() -> Any:
    # Imported by name: an optional accelerator, loaded only when wanted, without stubs.
    try:
        return importlib.import_module("psutil")
    except ImportError:
        return None


#: Fills its group's fields into the sample; raises (having set none of them) on failure.
Reader = Callable[[Section], None]


class HostProbe(Probe):
    """CPU, memory, load and uptime of the node.

    ``use_psutil``: None uses psutil when it can be imported and ``proc_root`` is the real
    /proc, False never does, True requires it (ImportError when missing). ``source`` says
    which path is in use.
    """

    name = "host"

    def __init__(
        self,
        proc_root: str = "/proc",
        etc_root: str = "/etc",
        use_psutil: Optional[bool] = None,
    ) -> None:
        self._proc_root = proc_root
        self._etc_root = etc_root
        self._stat_path = os.path.join(proc_root, "stat")
        self._meminfo_path = os.path.join(proc_root, "meminfo")
        self._loadavg_path = os.path.join(proc_root, "loadavg")
        self._uptime_path = os.path.join(proc_root, "uptime")
        # Read every tick: kept open (see HeldFile), which halves the cost of each read.
        self._stat_file = HeldFile(self._stat_path)
        self._meminfo_file = HeldFile(self._meminfo_path)
        # psutil always reads the real /proc: with another root (a test's fake) it is used
        # only when asked for by name.
        self._real_root = os.path.realpath(proc_root) == "/proc"
        self._psutil: Any = None
        if use_psutil or (use_psutil is None and self._real_root):
            self._psutil = _load_psutil()
            if use_psutil and self._psutil is None:
                raise ImportError("use_psutil=True but psutil cannot be imported")
        self.source = "psutil" if self._psutil is not None else "proc"
        self._prev_cpu: Optional[Tuple[float, float]] = None
        self._procs_age = PROCS_EVERY
        self._procs_last: Any = None  # the last count's result, or the exception it raised
        self._boot_time: Optional[float] = None
        self._cpu_count: Optional[int] = None
        self._cpu_count_age = 0
        # On the real /proc two values come cheaper from the kernel directly: the load from
        # sysinfo(2) via getloadavg, the uptime from CLOCK_BOOTTIME (what /proc/uptime
        # prints). A test's fake root is read as files.
        self._real_proc = self._real_root and hasattr(time, "CLOCK_BOOTTIME")
        groups: List[Tuple[Tuple[str, ...], Reader]]
        if self._psutil is not None:
            groups = [
                (("cpu_pct", "cpu_count"), self._ps_cpu),
                (("load1", "load5", "load15"), self._ps_load),
                (("mem_total_bytes", "mem_available_bytes"), self._ps_mem),
                (("swap_total_bytes", "swap_used_bytes"), self._ps_swap),
                (("uptime_s",), self._ps_uptime),
                (("procs",), self._ps_procs),
                (("procs_running",), self._procs_running_only),
            ]
        else:
            groups = [
                (("cpu_pct", "cpu_count", "procs_running"), self._stat),
                (("load1", "load5", "load15"), self._loadavg),
                (
                    (
                        "mem_total_bytes",
                        "mem_available_bytes",
                        "swap_total_bytes",
                        "swap_used_bytes",
                    ),
                    self._meminfo,
                ),
                (("uptime_s",), self._uptime),
                (("procs",), self._procs),
            ]
        self._groups = groups

    # --- facts ------------------------------------------------------------------------------

    def facts(self) -> Section:
        uname = os.uname()
        try:
            hostname = socket.gethostname()
        except OSError:
            hostname = uname.nodename
        facts: Section = {
            "hostname": hostname,
            "kernel": uname.release,
            "os": os_pretty_name(self._etc_root),
            "arch": uname.machine,
            "python": platform.python_version(),
            "cpu_count": None,
            "cpu_model": None,
            "mem_total_bytes": None,
            "boot_time": None,
        }
        errors: Dict[str, str] = {}
        for key, read in (
            ("cpu_count", self._fact_cpu_count),
            ("cpu_model", lambda: cpu_model(read_text(os.path.join(self._proc_root, "cpuinfo")))),
            ("mem_total_bytes", self._fact_mem_total),
            ("boot_time", self._fact_boot_time),
        ):
            try:
                facts[key] = read()
            except Exception as exc:  # one fact failing must not hide the others
                errors[key] = describe_error(exc)
        if errors:
            facts["field_errors"] = errors
        return facts

    def _fact_cpu_count(self) -> Optional[int]:
        if self._psutil is not None:
            return int(self._psutil.cpu_count())
        return ProcStat(read_all(self._stat_path)).cpu_count

    def _fact_mem_total(self) -> Optional[int]:
        if self._psutil is not None:
            return int(self._psutil.virtual_memory().total)
        return meminfo_bytes(read_all(self._meminfo_path), b"MemTotal")

    def _fact_boot_time(self) -> Optional[int]:
        if self._psutil is not None:
            return int(self._psutil.boot_time() + 0.5)  # btime is whole seconds
        return ProcStat(read_all(self._stat_path)).btime

    # --- sample -----------------------------------------------------------------------------

    def sample(self) -> Section:
        out: Section = dict.fromkeys(SAMPLE_FIELDS)
        errors: Dict[str, str] = {}
        first_error: Optional[Exception] = None
        for fields, read in self._groups:
            try:
                read(out)
            except Exception as exc:  # a failing file nulls its own fields only
                first_error = first_error or exc
                message = describe_error(exc)
                for key in fields:
                    out[key] = None
                    errors[key] = message
        if len(errors) == len(SAMPLE_FIELDS) and first_error is not None:
            raise first_error
        if errors:
            out["field_errors"] = errors
        return out

    def close(self) -> None:
        self._stat_file.close()
        self._meminfo_file.close()

    def _cpu(self, busy: float, total: float) -> Optional[float]:
        now = (busy, total)
        pct = cpu_pct(self._prev_cpu, now)
        self._prev_cpu = now
        return pct

    # /proc path (each reader reads, then sets its fields: all or none of them)

    def _stat(self, out: Section) -> None:
        stat = ProcStat(self._stat_file.read())
        out["cpu_pct"] = self._cpu(stat.busy, stat.total)
        out["cpu_count"] = stat.cpu_count
        out["procs_running"] = stat.procs_running

    def _loadavg(self, out: Section) -> None:
        if self._real_proc:
            load1, load5, load15 = os.getloadavg()
            out["load1"] = round(load1, 2)
            out["load5"] = round(load5, 2)
            out["load15"] = round(load15, 2)
            return
        parts = read_text(self._loadavg_path).split()
        loads = float(parts[0]), float(parts[1]), float(parts[2])
        out["load1"], out["load5"], out["load15"] = loads

    def _meminfo(self, out: Section) -> None:
        data = self._meminfo_file.read()
        total, available, swap_total, swap_free = meminfo_values(data, _MEMINFO_KEYS)
        if available is None:  # kernels before 3.14: the old free + buffers + cache estimate
            parts = meminfo_values(data, (b"MemFree", b"Buffers", b"Cached"))
            available = sum(p or 0 for p in parts)
        out["mem_total_bytes"] = total
        out["mem_available_bytes"] = available
        out["swap_total_bytes"] = swap_total
        out["swap_used_bytes"] = (
            swap_total - swap_free if swap_total is not None and swap_free is not None else None
        )

    def _uptime(self, out: Section) -> None:
        if self._real_proc:
            out["uptime_s"] = round(time.clock_gettime(time.CLOCK_BOOTTIME), 2)
        else:
            out["uptime_s"] = float(read_text(self._uptime_path).split()[0])

    def _procs(self, out: Section) -> None:
        out["procs"] = self._every(self._count_procs)

    def _count_procs(self) -> int:
        # bytes names: listdir skips decoding each of the (often thousands of) entries, and
        # map() counts them in C, without a Python-level step per process.
        names = os.listdir(os.fsencode(self._proc_root))
        return sum(map(bytes.isdigit, names))

    def _every(self, count: Callable[[], int]) -> int:
        """``count()`` once every PROCS_EVERY samples; its last result (or error) between."""
        self._procs_age += 1
        if self._procs_age >= PROCS_EVERY:
            self._procs_age = 0
            try:
                self._procs_last = count()
            except Exception as exc:  # remembered, so the field stays named until it recovers
                self._procs_last = exc
        if isinstance(self._procs_last, Exception):
            raise self._procs_last
        return int(self._procs_last)

    # psutil path: the same keys, types and units

    def _ps_cpu(self, out: Section) -> None:
        t = self._psutil.cpu_times()
        total = (
            sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
        )  # guest time is already inside user/nice
        busy = total - t.idle - getattr(t, "iowait", 0.0)
        # The count changes only with CPU hotplug; psutil asks sysfs for it on every call.
        self._cpu_count_age += 1
        if self._cpu_count is None or self._cpu_count_age >= PROCS_EVERY:
            self._cpu_count_age = 0
            self._cpu_count = int(self._psutil.cpu_count())
        out["cpu_pct"] = self._cpu(busy, total)
        out["cpu_count"] = self._cpu_count

    def _ps_load(self, out: Section) -> None:
        load = self._psutil.getloadavg()
        out["load1"], out["load5"], out["load15"] = (round(value, 2) for value in load[:3])

    def _ps_mem(self, out: Section) -> None:
        vm = self._psutil.virtual_memory()
        out["mem_total_bytes"], out["mem_available_bytes"] = int(vm.total), int(vm.available)

    def _ps_swap(self, out: Section) -> None:
        sw = self._psutil.swap_memory()
        out["swap_total_bytes"], out["swap_used_bytes"] = int(sw.total), int(sw.used)

    def _ps_uptime(self, out: Section) -> None:
        if self._boot_time is None:  # fixed since boot; psutil reads /proc/stat per call
            self._boot_time = float(self._psutil.boot_time())
        out["uptime_s"] = round(time.time() - self._boot_time, 2)

    def _ps_procs(self, out: Section) -> None:
        out["procs"] = self._every(lambda: len(self._psutil.pids()))

    def _procs_running_only(self, out: Section) -> None:
        # psutil has no count of runnable tasks. /proc/loadavg's "R/T" holds it where it
        # exists (Linux): the same nr_running() as procs_running in /proc/stat, cheaper.
        try:
            text = read_text(self._loadavg_path)
        except FileNotFoundError:
            out["procs_running"] = None  # not Linux: not supported
            return
        out["procs_running"] = int(text.split()[3].split("/")[0])
