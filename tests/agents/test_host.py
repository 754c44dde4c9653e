"""The host probe: /proc parsers, the CPU delta, and psutil giving the same record."""

from __future__ import annotations

import errno
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.procfs import (
    FakeProc,
    cpuinfo_arm64_text,
    cpuinfo_text,
    loadavg_text,
    meminfo_text,
    os_release_text,
    stat_text,
    uptime_text,
)
from tidectl.agents.probes.fsread import HeldFile
from tidectl.agents.probes.host import (
    PROCS_EVERY,
    HostProbe,
    ProcStat,
    cpu_model,
    cpu_pct,
    meminfo_values,
)

#: The sample's keys, exactly as docs/agent-protocol.md lists them.
SAMPLE_KEYS = [
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
]
FACT_KEYS = [
    "hostname",
    "kernel",
    "os",
    "arch",
    "python",
    "cpu_count",
    "cpu_model",
    "mem_total_bytes",
    "boot_time",
]

# user nice system idle iowait irq softirq steal guest guest_nice
CPU0 = [1000, 10, 300, 8000, 50, 5, 20, 0, 100, 0]
CPU1 = [2000, 0, 400, 7000, 150, 5, 30, 10, 0, 0]
MODEL = "Intel(R) Xeon(R) Platinum 8480+"


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    fake = FakeProc(tmp_path / "proc")
    fake.write("stat", stat_text([CPU0, CPU1], btime=1764360000, procs_running=7))
    fake.write("meminfo", meminfo_text())
    fake.write("loadavg", loadavg_text(12.5, 8.25, 3.0))
    fake.write("uptime", uptime_text(86400.25, 170000.5))
    fake.write("cpuinfo", cpuinfo_text(MODEL, 2))
    fake.add_pids([1, 2, 731, 4818, 99999])
    return fake


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    path = tmp_path / "etc"
    path.mkdir()
    (path / "os-release").write_text(os_release_text("Ubuntu 22.04.4 LTS"))
    return path


def test_proc_stat_parser() -> None:
    stat = ProcStat(
        stat_text([CPU0, CPU1, CPU0, CPU1], procs_running=11, btime=1700000000).encode()
    )
    assert stat.cpu_count == 4
    assert stat.procs_running == 11
    assert stat.btime == 1700000000
    # guest (already inside user) is not counted twice; iowait counts as idle
    total = 2 * (sum(CPU0[:8]) + sum(CPU1[:8]))
    assert stat.total == total
    assert stat.busy == total - 2 * (8000 + 50 + 7000 + 150)


def test_proc_stat_parser_reads_past_a_huge_intr_line(tmp_path: Path) -> None:
    # 8192 IRQs (a node full of NICs and GPUs) push procs_running past 64 KiB.
    fake = FakeProc(tmp_path / "proc")
    fake.write("stat", stat_text([CPU0] * 256, irqs=40000, procs_running=42))
    assert (fake.root / "stat").stat().st_size > 1 << 16
    section = HostProbe(proc_root=fake.path, use_psutil=False).sample()
    assert section["procs_running"] == 42
    assert section["cpu_count"] == 256


def test_cpu_pct_is_the_busy_share_since_the_previous_sample(proc: FakeProc) -> None:
    probe = HostProbe(proc_root=proc.path, use_psutil=False)
    assert probe.sample()["cpu_pct"] is None  # nothing to compare with yet
    # 1000 more ticks on the two CPUs: 250 user + 50 system + 100 guest (inside user) busy,
    # 600 idle + 100 iowait idle
    cpu0 = [c + d for c, d in zip(CPU0, [250, 0, 50, 300, 100, 0, 0, 0, 100, 0], strict=True)]
    cpu1 = [c + d for c, d in zip(CPU1, [0, 0, 0, 300, 0, 0, 0, 0, 0, 0], strict=True)]
    proc.write("stat", stat_text([cpu0, cpu1]))
    assert probe.sample()["cpu_pct"] == 30.0
    proc.write("stat", stat_text([cpu0, cpu1]))  # same jiffy: no honest value
    assert probe.sample()["cpu_pct"] is None


def test_cpu_pct_bounds() -> None:
    assert cpu_pct(None, (1.0, 2.0)) is None
    assert cpu_pct((10.0, 100.0), (10.0, 100.0)) is None
    assert cpu_pct((10.0, 100.0), (20.0, 90.0)) is None  # counters went back
    assert cpu_pct((0.0, 0.0), (1.0, 3.0)) == 33.3
    assert cpu_pct((0.0, 0.0), (5.0, 4.0)) == 100.0


def test_sample_reads_every_file(proc: FakeProc) -> None:
    section = HostProbe(proc_root=proc.path, use_psutil=False).sample()
    assert list(section) == SAMPLE_KEYS
    assert section == {
        "cpu_pct": None,
        "cpu_count": 2,
        "load1": 12.5,
        "load5": 8.25,
        "load15": 3.0,
        "mem_total_bytes": 263856580 * 1024,
        "mem_available_bytes": 248718352 * 1024,
        "swap_total_bytes": 8388604 * 1024,
        "swap_used_bytes": (8388604 - 8126460) * 1024,
        "uptime_s": 86400.25,
        "procs": 5,
        "procs_running": 7,
    }
    json.dumps(section, allow_nan=False)


def test_mem_available_estimate_on_kernels_before_3_14(proc: FakeProc) -> None:
    proc.write("meminfo", meminfo_text(drop=["MemAvailable"], MemFree=1000, Buffers=20, Cached=300))
    section = HostProbe(proc_root=proc.path, use_psutil=False).sample()
    assert section["mem_available_bytes"] == 1320 * 1024


def test_a_missing_file_nulls_only_its_fields(proc: FakeProc) -> None:
    (proc.root / "loadavg").unlink()
    section = HostProbe(proc_root=proc.path, use_psutil=False).sample()
    assert (section["load1"], section["load5"], section["load15"]) == (None, None, None)
    assert set(section["field_errors"]) == {"load1", "load5", "load15"}
    assert section["field_errors"]["load1"].startswith("FileNotFoundError: ")
    assert section["mem_total_bytes"] == 263856580 * 1024


def test_nothing_readable_fails_the_section(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        HostProbe(proc_root=str(tmp_path / "missing"), use_psutil=False).sample()


def test_facts(proc: FakeProc, etc: Path) -> None:
    facts = HostProbe(proc_root=proc.path, etc_root=str(etc), use_psutil=False).facts()
    assert list(facts) == FACT_KEYS
    uname = os.uname()
    assert facts["kernel"] == uname.release
    assert facts["arch"] == uname.machine
    assert facts["python"] == platform.python_version()
    assert facts["os"] == "Ubuntu 22.04.4 LTS"
    assert facts["cpu_count"] == 2
    assert facts["cpu_model"] == MODEL
    assert facts["mem_total_bytes"] == 263856580 * 1024
    assert facts["boot_time"] == 1764360000
    assert isinstance(facts["hostname"], str) and facts["hostname"]


def test_os_release_quoting_and_usr_lib_fallback(proc: FakeProc, tmp_path: Path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    usr_lib = tmp_path / "usr" / "lib"
    usr_lib.mkdir(parents=True)
    (usr_lib / "os-release").write_text(os_release_text('Rocky Linux 9.4 "Blue Onyx"'))
    facts = HostProbe(proc_root=proc.path, etc_root=str(etc), use_psutil=False).facts()
    assert facts["os"] == 'Rocky Linux 9.4 "Blue Onyx"'
    (usr_lib / "os-release").unlink()
    assert HostProbe(proc_root=proc.path, etc_root=str(etc), use_psutil=False).facts()["os"] is None


def test_cpu_model_by_architecture() -> None:
    assert cpu_model(cpuinfo_text(MODEL, 4)) == MODEL
    assert cpu_model(cpuinfo_arm64_text(4)) is None
    power = "processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\nclock\t\t: 3800.000000MHz\n"
    assert cpu_model(power) == "POWER9 (raw), altivec supported"


def test_use_psutil_true_requires_psutil(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil -> ImportError
    with pytest.raises(ImportError):
        HostProbe(use_psutil=True)
    assert HostProbe().source == "proc"


def test_psutil_is_not_used_by_default_on_a_fake_root(proc: FakeProc) -> None:
    # psutil reads the real /proc whatever root the probe was given.
    pytest.importorskip("psutil")
    assert HostProbe(proc_root=proc.path).source == "proc"
    assert HostProbe().source == "psutil"
    assert HostProbe(proc_root=proc.path, use_psutil=True).source == "psutil"


# --- psutil against /proc, on this machine -------------------------------------------------


def test_psutil_and_proc_give_the_same_record() -> None:
    pytest.importorskip("psutil")
    by_proc = HostProbe(use_psutil=False)
    by_psutil = HostProbe(use_psutil=True)
    assert (by_proc.source, by_psutil.source) == ("proc", "psutil")

    facts_a, facts_b = by_proc.facts(), by_psutil.facts()
    assert list(facts_a) == list(facts_b) == FACT_KEYS
    assert {k: type(v) for k, v in facts_a.items()} == {k: type(v) for k, v in facts_b.items()}
    for key in ("hostname", "kernel", "os", "arch", "cpu_count", "cpu_model", "mem_total_bytes"):
        assert facts_a[key] == facts_b[key], key
    assert abs(facts_a["boot_time"] - facts_b["boot_time"]) <= 1

    by_proc.sample(), by_psutil.sample()
    time.sleep(0.3)
    a, b = by_proc.sample(), by_psutil.sample()
    assert list(a) == list(b) == SAMPLE_KEYS
    assert {k: type(v) for k, v in a.items()} == {k: type(v) for k, v in b.items()}
    assert a["cpu_count"] == b["cpu_count"] == os.cpu_count()
    assert a["mem_total_bytes"] == b["mem_total_bytes"]
    assert a["swap_total_bytes"] == b["swap_total_bytes"]
    assert abs(a["mem_available_bytes"] - b["mem_available_bytes"]) < 256 << 20
    assert abs(a["swap_used_bytes"] - b["swap_used_bytes"]) < 256 << 20
    for key in ("load1", "load5", "load15"):
        assert abs(a[key] - b[key]) < 1.0, key
    assert abs(a["uptime_s"] - b["uptime_s"]) < 3.0
    assert abs(a["procs"] - b["procs"]) < 20
    assert a["procs_running"] >= 0
    assert b["procs_running"] >= 0
    assert 0.0 <= a["cpu_pct"] <= 100.0 and 0.0 <= b["cpu_pct"] <= 100.0
    assert abs(a["cpu_pct"] - b["cpu_pct"]) < 50.0


def test_proc_path_agrees_with_the_os() -> None:
    section = HostProbe(use_psutil=False).sample()
    assert section["cpu_count"] == os.cpu_count()
    assert (section["load1"], section["load5"], section["load15"]) == pytest.approx(
        os.getloadavg(), abs=0.5
    )
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert abs(section["mem_total_bytes"] - pages) < 64 << 20
    pids = [n for n in os.listdir("/proc") if n.isdigit()]
    assert abs(section["procs"] - len(pids)) < 20
    assert "field_errors" not in section


def test_procs_is_recounted_every_procs_every_samples(proc: FakeProc) -> None:
    probe = HostProbe(proc_root=proc.path, use_psutil=False)
    assert probe.sample()["procs"] == 5
    proc.add_pids([5000, 5001, 5002])
    counts = [probe.sample()["procs"] for _ in range(PROCS_EVERY)]
    assert counts == [5] * (PROCS_EVERY - 1) + [8]


def test_procs_error_stays_named_until_the_next_count(
    proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = HostProbe(proc_root=proc.path, use_psutil=False)
    assert probe.sample()["procs"] == 5
    real_listdir = os.listdir

    def listdir(path: bytes) -> list[bytes]:
        if os.fsdecode(path) == proc.path:
            raise PermissionError(13, "Permission denied", proc.path)
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", listdir)
    sections = [probe.sample() for _ in range(PROCS_EVERY + 1)]
    monkeypatch.undo()
    assert [s["procs"] for s in sections[: PROCS_EVERY - 1]] == [5] * (PROCS_EVERY - 1)
    failed = sections[PROCS_EVERY - 1 :]
    assert all(s["procs"] is None for s in failed)
    assert all(s["field_errors"] == {"procs": failed[0]["field_errors"]["procs"]} for s in failed)
    assert failed[0]["field_errors"]["procs"].startswith("PermissionError: ")
    assert failed[0]["mem_total_bytes"] == 263856580 * 1024


def test_real_proc_shortcuts_match_the_files() -> None:
    # On the real /proc, load comes from getloadavg and uptime from CLOCK_BOOTTIME.
    section = HostProbe(use_psutil=False).sample()
    uptime_file = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(section["uptime_s"] - uptime_file) < 1.0
    load_file = [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    assert [section["load1"], section["load5"], section["load15"]] == pytest.approx(
        load_file, abs=0.05
    )


# --- held files (fsread.HeldFile): /proc/stat and /proc/meminfo stay open ------------------


def _count_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    opened: list[str] = []
    real_open = os.open

    def counting(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        opened.append(os.fsdecode(path) if not isinstance(path, int) else str(path))
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", counting)
    return opened


def test_a_held_proc_file_gives_fresh_values_without_reopening(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = HeldFile("/proc/self/schedstat")  # first field: ns this thread ran on a CPU
    first = int(held.read().split()[0])
    opened = _count_opens(monkeypatch)
    deadline = time.process_time() + 0.02
    while time.process_time() < deadline:
        pass
    second = int(held.read().split()[0])
    monkeypatch.undo()
    held.close()
    assert second - first >= 10_000_000  # the 20 ms burnt since, seen through the same fd
    assert opened == []


def test_the_host_probe_opens_proc_stat_and_meminfo_once(
    proc: FakeProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = HostProbe(proc_root=proc.path, use_psutil=False)
    probe.sample()
    opened = _count_opens(monkeypatch)
    cpu0 = [c + d for c, d in zip(CPU0, [100, 0, 0, 100, 0, 0, 0, 0, 0, 0], strict=True)]
    proc.write("stat", stat_text([cpu0, CPU1], procs_running=9))  # rewritten in place
    proc.write("meminfo", meminfo_text(MemAvailable=1000))
    section = probe.sample()
    monkeypatch.undo()
    probe.close()
    assert (section["cpu_pct"], section["procs_running"]) == (50.0, 9)
    assert section["mem_available_bytes"] == 1000 * 1024
    assert not [path for path in opened if path.endswith(("/stat", "/meminfo"))]


def test_a_held_file_longer_than_one_read_is_read_whole_then_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "stat"
    text = stat_text([CPU0] * 256, irqs=40000, procs_running=42)
    path.write_text(text)
    assert len(text) > 1 << 16
    held = HeldFile(str(path))
    assert held.read() == text.encode()
    reads: list[int] = []
    real_pread = os.pread

    def counting(fd: int, size: int, offset: int) -> bytes:
        reads.append(offset)
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", counting)
    assert held.read() == text.encode()
    held.close()
    assert reads == [0]  # it learnt the size


def test_a_held_file_whose_device_went_is_opened_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "operstate"
    path.write_text("up\n")
    held = HeldFile(str(path), 64)
    assert held.read() == b"up\n"
    # The interface is deleted and made again: a new file at the path, and the held
    # descriptor's next read fails with ENODEV, as sysfs does for a removed device.
    stale_fd = held._fd
    path.unlink()
    path.write_text("down\n")
    real_pread = os.pread
    failed: list[int] = []

    def pread(fd: int, size: int, offset: int) -> bytes:
        if fd == stale_fd and not failed:  # the new descriptor may get the same number
            failed.append(fd)
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        return real_pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", pread)
    assert held.read() == b"down\n"
    assert failed == [stale_fd]
    # Other errors are the file's value, not its absence: raised, the descriptor kept.
    kept = held._fd

    def einval(fd: int, size: int, offset: int) -> bytes:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    monkeypatch.setattr(os, "pread", einval)
    with pytest.raises(OSError, match="Invalid argument"):
        held.read()
    assert held._fd == kept
    monkeypatch.undo()
    held.close()


def test_held_files_are_released(proc: FakeProc) -> None:
    fd_folder = "/proc/self/fd"
    gc.collect()  # earlier tests' dropped probes
    before = len(os.listdir(fd_folder))
    probe = HostProbe(proc_root=proc.path, use_psutil=False)
    probe.sample()
    assert len(os.listdir(fd_folder)) == before + 2  # /proc/stat and /proc/meminfo
    probe.close()
    assert len(os.listdir(fd_folder)) == before
    probe.sample()
    del probe  # dropped without close(): the descriptors go with it, at the next
    gc.collect()  # collection (the probe holds bound methods of itself)
    assert len(os.listdir(fd_folder)) == before


def test_not_kept_open_reads_by_path(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("1\n")
    held = HeldFile(str(path), keep_open=False)
    assert held.read() == b"1\n"
    assert held._fd is None
    path.unlink()
    path.write_text("2\n")
    assert held.read_text() == "2"


def test_meminfo_values_reads_several_keys_at_once() -> None:
    data = meminfo_text(MemTotal=100, SwapFree=3).encode()
    assert meminfo_values(data, (b"MemTotal", b"SwapFree", b"Nope")) == [100 * 1024, 3 * 1024, None]
