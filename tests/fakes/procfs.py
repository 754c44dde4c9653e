"""Fake /proc and /sys/class/net trees, in the kernel's own formats.

Each ``*_text`` builder renders one file the way the kernel prints it (the format strings
are quoted from the kernel sources named in each docstring), so the probes parse exactly
what they meet on a node. ``FakeProc`` writes them under a temporary root; ``add_nic``
builds a ``/sys/class/net/<if>`` entry with the real symlink layout (class link into
``devices/``, ``device`` link to the PCI function, ``device/driver`` link into ``bus/``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# --- /proc/stat ----------------------------------------------------------------------------

#: The ten per-CPU columns of /proc/stat, in order (Documentation/filesystems/proc.rst).
CPU_COLUMNS = (
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "irq",
    "softirq",
    "steal",
    "guest",
    "guest_nice",
)


def _join(values: Iterable[int]) -> str:
    return " ".join(str(v) for v in values)


def stat_text(
    per_cpu: Sequence[Sequence[int]],
    *,
    btime: int = 1764360000,
    processes: int = 48213,
    procs_running: int = 3,
    procs_blocked: int = 0,
    ctxt: int = 93817261,
    irqs: int = 64,
) -> str:
    """/proc/stat (fs/proc/stat.c ``show_stat``): ``cpu  `` (two spaces) sums the per-CPU rows.

    Each row of ``per_cpu`` holds the ten columns of :data:`CPU_COLUMNS`, in USER_HZ ticks.
    """
    rows = [list(row) + [0] * (10 - len(row)) for row in per_cpu]
    total = [sum(column) for column in zip(*rows, strict=True)] if rows else [0] * 10
    lines = ["cpu  " + _join(total)]
    lines += [f"cpu{i} {_join(row)}" for i, row in enumerate(rows)]
    per_irq = [0] * irqs
    per_irq[0:4] = [38, 0, 0, 9]
    lines.append(f"intr {sum(per_irq)} {_join(per_irq)}")
    lines += [
        f"ctxt {ctxt}",
        f"btime {btime}",
        f"processes {processes}",
        f"procs_running {procs_running}",
        f"procs_blocked {procs_blocked}",
        "softirq 84413 0 11052 3 2589 17308 0 3 29474 0 23984",
    ]
    return "\n".join(lines) + "\n"


# --- /proc/meminfo -------------------------------------------------------------------------

#: A real /proc/meminfo (kB), from a 6.x kernel; builders override single keys.
MEMINFO_KB: dict[str, int] = {
    "MemTotal": 263856580,
    "MemFree": 201244316,
    "MemAvailable": 248718352,
    "Buffers": 1309984,
    "Cached": 44016476,
    "SwapCached": 0,
    "Active": 16110816,
    "Inactive": 38203444,
    "Active(anon)": 9084,
    "Inactive(anon)": 9288664,
    "Active(file)": 16101732,
    "Inactive(file)": 28914780,
    "Unevictable": 11144,
    "Mlocked": 9440,
    "SwapTotal": 8388604,
    "SwapFree": 8126460,
    "Zswap": 0,
    "Zswapped": 0,
    "Dirty": 1880,
    "Writeback": 0,
    "AnonPages": 9022196,
    "Mapped": 1289064,
    "Shmem": 284128,
    "KReclaimable": 2958276,
    "Slab": 4409196,
    "SReclaimable": 2958276,
    "SUnreclaim": 1450920,
    "KernelStack": 46368,
    "PageTables": 88932,
    "SecPageTables": 0,
    "NFS_Unstable": 0,
    "Bounce": 0,
    "WritebackTmp": 0,
    "CommitLimit": 140316892,
    "Committed_AS": 24862712,
    "VmallocTotal": 34359738367,
    "VmallocUsed": 412916,
    "VmallocChunk": 0,
    "Percpu": 147456,
    "HardwareCorrupted": 0,
    "AnonHugePages": 5851136,
    "ShmemHugePages": 0,
    "ShmemPmdMapped": 0,
    "FileHugePages": 0,
    "FilePmdMapped": 0,
    "Balloon": 0,
}

_HUGEPAGE_LINES = (
    ("HugePages_Total", "0"),
    ("HugePages_Free", "0"),
    ("HugePages_Rsvd", "0"),
    ("HugePages_Surp", "0"),
)


def meminfo_text(drop: Iterable[str] = (), **kb: int) -> str:
    """/proc/meminfo (fs/proc/meminfo.c ``show_val_kb``: ``"%s:%*lu kB"``, columns at 16+8).

    Keyword arguments override values (in kB); ``drop`` removes keys, as old kernels lack
    ``MemAvailable``.
    """
    values = dict(MEMINFO_KB)
    values.update(kb)
    dropped = set(drop)
    lines = [
        "{:<16}{:>8} kB".format(key + ":", value)
        for key, value in values.items()
        if key not in dropped
    ]
    lines += ["{:<16}{:>8}".format(key + ":", value) for key, value in _HUGEPAGE_LINES]
    lines += [
        "{:<16}{:>8} kB".format("Hugepagesize:", 2048),
        "{:<16}{:>8} kB".format("Hugetlb:", 0),
    ]
    lines += ["{:<16}{:>8} kB".format(k + ":", v) for k, v in (("DirectMap4k", 20480),)]
    return "\n".join(lines) + "\n"


# --- small /proc files ---------------------------------------------------------------------


def loadavg_text(
    load1: float, load5: float, load15: float, *, running: int = 2, total: int = 911
) -> str:
    """/proc/loadavg (fs/proc/loadavg.c): ``"%lu.%02lu %lu.%02lu %lu.%02lu %u/%d %d"``."""
    return f"{load1:.2f} {load5:.2f} {load15:.2f} {running}/{total} 4818\n"


def uptime_text(uptime_s: float, idle_s: float) -> str:
    """/proc/uptime (fs/proc/uptime.c): ``"%lu.%02lu %lu.%02lu"``; idle sums all CPUs."""
    return f"{uptime_s:.2f} {idle_s:.2f}\n"


def cpuinfo_text(model: str, count: int) -> str:
    """/proc/cpuinfo of an x86 node (arch/x86/kernel/cpu/proc.c): one tab-aligned block per CPU."""
    blocks = []
    for cpu in range(count):
        blocks.append(
            f"processor\t: {cpu}\n"
            "vendor_id\t: GenuineIntel\n"
            "cpu family\t: 6\n"
            "model\t\t: 143\n"
            f"model name\t: {model}\n"
            "stepping\t: 8\n"
            "microcode\t: 0x2b000571\n"
            "cpu MHz\t\t: 2000.000\n"
            "cache size\t: 107520 KB\n"
            "physical id\t: 0\n"
            f"siblings\t: {count}\n"
            f"core id\t\t: {cpu}\n"
            f"cpu cores\t: {count}\n"
            "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr avx512f amx_tile\n"
            "bogomips\t: 4000.00\n"
            "clflush size\t: 64\n"
            "cache_alignment\t: 64\n"
            "address sizes\t: 46 bits physical, 57 bits virtual\n"
            "power management:\n"
        )
    return "\n".join(blocks) + "\n"


def cpuinfo_arm64_text(count: int) -> str:
    """/proc/cpuinfo of an arm64 node (arch/arm64/kernel/cpuinfo.c): no ``model name``."""
    block = (
        "processor\t: %d\n"
        "BogoMIPS\t: 2000.00\n"
        "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"
        "CPU implementer\t: 0x41\n"
        "CPU architecture: 8\n"
        "CPU variant\t: 0x0\n"
        "CPU part\t: 0xd4f\n"
        "CPU revision\t: 0\n"
    )
    return "\n".join(block % i for i in range(count)) + "\n"


def os_release_text(pretty: str) -> str:
    """os-release(5): shell-style assignments, values quoted."""
    quoted = pretty.replace("\\", "\\\\").replace('"', '\\"')
    return (
        'NAME="Ubuntu"\nVERSION_ID="22.04"\nVERSION="22.04.4 LTS (Jammy Jellyfish)"\n'
        f'ID=ubuntu\nID_LIKE=debian\nPRETTY_NAME="{quoted}"\nHOME_URL="https://www.ubuntu.com/"\n'
    )


# --- /proc/net/dev -------------------------------------------------------------------------


@dataclass
class DevCounters:
    """One row of /proc/net/dev."""

    rx_bytes: int = 0
    rx_packets: int = 0
    rx_errs: int = 0
    rx_drop: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_errs: int = 0
    tx_drop: int = 0


_NET_DEV_ROW = "%6s: %7d %7d %4d %4d %4d %5d %10d %9d %8d %7d %4d %4d %4d %5d %7d %10d"


def net_dev_text(rows: Mapping[str, DevCounters]) -> str:
    """/proc/net/dev (net/core/net-procfs.c ``dev_seq_printf_stats``)."""
    lines = [
        "Inter-|   Receive                                                |  Transmit",
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets"
        " errs drop fifo colls carrier compressed",
    ]
    for name, c in rows.items():
        rx = (c.rx_bytes, c.rx_packets, c.rx_errs, c.rx_drop, 0, 0, 0, 0)
        tx = (c.tx_bytes, c.tx_packets, c.tx_errs, c.tx_drop, 0, 0, 0, 0)
        lines.append(_NET_DEV_ROW % ((name, *rx, *tx)))
    return "\n".join(lines) + "\n"


# --- /proc/self/mountinfo ------------------------------------------------------------------


def mangle(text: str) -> str:
    """The kernel's ``mangle``/``seq_escape``: space, tab, newline and backslash as ``\\ooo``."""
    out = []
    for ch in text:
        out.append(f"\\{ord(ch):03o}" if ch in " \t\n\\" else ch)
    return "".join(out)


@dataclass
class Mount:
    """One mount, as ``show_mountinfo`` (fs/proc_namespace.c) prints it."""

    mountpoint: str
    fstype: str
    source: str
    super_options: str = "rw"
    options: str = "rw,relatime"
    root: str = "/"
    dev: str = "0:0"
    optional: str = "shared:1"


def mountinfo_text(mounts: Sequence[Mount], first_id: int = 22) -> str:
    """/proc/self/mountinfo lines:
    ``id parent maj:min root mountpoint opts [optional...] - fstype source super_opts``."""
    lines = []
    for i, m in enumerate(mounts):
        mount_id = first_id + i
        parent = 1 if i == 0 else first_id
        optional = (" " + m.optional) if m.optional else ""
        lines.append(
            f"{mount_id} {parent} {m.dev} {mangle(m.root)} {mangle(m.mountpoint)} {m.options}"
            f"{optional} - {mangle(m.fstype)} {mangle(m.source)} {m.super_options}"
        )
    return "\n".join(lines) + "\n"


#: A GPU node's mount table: pseudo filesystems that must be dropped, local disks, NFS homes,
#: the three parallel file systems of HPC sites, a path with a space, and container noise.
HPC_MOUNTS: list[Mount] = [
    Mount("/", "ext4", "/dev/nvme0n1p2", "rw,errors=remount-ro", dev="259:2", optional=""),
    Mount("/proc", "proc", "proc", "rw", "rw,nosuid,nodev,noexec,relatime", dev="0:22"),
    Mount("/sys", "sysfs", "sysfs", "rw", "rw,nosuid,nodev,noexec,relatime", dev="0:21"),
    Mount("/dev", "devtmpfs", "udev", "rw,size=131889508k,nr_inodes=32972377,mode=755", dev="0:5"),
    Mount("/dev/pts", "devpts", "devpts", "rw,gid=5,mode=620,ptmxmode=000", dev="0:23"),
    Mount("/dev/shm", "tmpfs", "tmpfs", "rw,inode64", "rw,nosuid,nodev", dev="0:24"),
    Mount("/run", "tmpfs", "tmpfs", "rw,size=26385660k,mode=755,inode64", dev="0:25"),
    Mount("/sys/fs/cgroup", "cgroup2", "cgroup2", "rw,nsdelegate,memory_recursiveprot", dev="0:26"),
    Mount("/sys/kernel/debug", "debugfs", "debugfs", "rw", dev="0:7"),
    Mount("/proc/sys/fs/binfmt_misc", "autofs", "systemd-1", "rw,fd=29,pgrp=1", dev="0:33"),
    Mount("/boot/efi", "vfat", "/dev/nvme0n1p1", "rw,fmask=0077,dmask=0077", dev="259:1"),
    Mount("/snap/core20/2318", "squashfs", "/dev/loop0", "ro,errors=continue", dev="7:0"),
    Mount("/raid", "xfs", "/dev/md0", "rw,attr2,inode64,logbufs=8,noquota", dev="9:0"),
    Mount(
        "/home",
        "nfs4",
        "nas01.example.org:/export/home",
        "rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,"
        "sec=sys,clientaddr=10.1.0.17,local_lock=none,addr=10.1.0.5",
        dev="0:52",
    ),
    Mount(
        "/lustre/scratch",
        "lustre",
        "10.10.0.1@o2ib:10.10.0.2@o2ib:/scratch",
        "rw,flock,lazystatfs,encrypt",
        dev="0:60",
    ),
    Mount("/gpfs/fs1", "gpfs", "fs1", "rw", dev="0:61"),
    Mount(
        "/mnt/beegfs",
        "beegfs",
        "beegfs_nodev",
        "rw,cfgFile=/etc/beegfs/beegfs-client.conf",
        dev="0:62",
    ),
    Mount(
        "/mnt/team data", "nfs", "10.1.0.9:/vol/team data", "rw,vers=3,hard,proto=tcp", dev="0:63"
    ),
    Mount("/run/user/1000", "tmpfs", "tmpfs", "rw,size=26385656k,mode=700,uid=1000", dev="0:70"),
    Mount(
        "/var/lib/docker/overlay2/3f1c/merged",
        "overlay",
        "overlay",
        "rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B",
        dev="0:71",
    ),
    Mount("/run/docker/netns/9a2b", "nsfs", "nsfs", "rw", dev="0:4"),
    Mount("/sys/fs/fuse/connections", "fusectl", "fusectl", "rw", dev="0:39"),
]


# --- /proc/diskstats -----------------------------------------------------------------------


@dataclass
class Disk:
    """One row of /proc/diskstats (the I/O counters in Documentation/admin-guide/iostats.rst)."""

    major: int
    minor: int
    name: str
    reads: int = 0
    sectors_read: int = 0
    writes: int = 0
    sectors_written: int = 0
    io_ms: int = 0


def diskstats_text(disks: Sequence[Disk], fields: int = 20) -> str:
    """/proc/diskstats (block/genhd.c ``diskstats_show``).

    14 fields, 18 since Linux 4.18 (discards), 20 since 5.5 (flushes).
    """
    lines = []
    for d in disks:
        values = [
            d.reads,
            d.reads // 4,  # merged
            d.sectors_read,
            d.reads // 2,  # ms reading
            d.writes,
            d.writes // 3,  # merged
            d.sectors_written,
            d.writes,  # ms writing
            0,  # in flight
            d.io_ms,
            d.io_ms * 2,  # weighted ms
            0,  # discards
            0,
            0,
            0,
            d.writes // 50,  # flushes
            d.writes // 100,
        ][: fields - 3]
        lines.append(f"{d.major:4d} {d.minor:7d} {d.name} {_join(values)}")
    return "\n".join(lines) + "\n"


# --- a fake /proc root ---------------------------------------------------------------------


class FakeProc:
    """A directory laid out like /proc; write files with :meth:`write`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @property
    def path(self) -> str:
        return str(self.root)

    def write(self, name: str, text: str) -> None:
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def add_pids(self, pids: Iterable[int]) -> None:
        """Process directories (``/proc/<pid>``) next to non-process entries."""
        for pid in pids:
            (self.root / str(pid)).mkdir(exist_ok=True)
        for other in ("self", "sys", "net", "1x", "acpi"):
            (self.root / other).mkdir(exist_ok=True)


# --- /sys/class/net ------------------------------------------------------------------------


@dataclass
class Nic:
    """One network interface: physical when ``pci`` and ``driver`` are set, else virtual.

    ``speed`` None means the link is down: the kernel then fails ``read()`` of ``speed`` (and
    of ``carrier`` when ``carrier`` is None) with EINVAL, which a regular file cannot do, so
    those paths are listed in :attr:`FakeSysNet.einval` for :func:`einval_reader`.
    """

    name: str
    mac: str = "00:00:00:00:00:00"
    mtu: int = 1500
    operstate: str = "up"
    carrier: int | None = 1
    speed: int | None = 100000
    pci: str | None = None
    driver: str | None = None


@dataclass
class FakeSysNet:
    """A fake /sys root holding class/net."""

    root: Path
    einval: set[str] = field(default_factory=set)

    @property
    def path(self) -> str:
        return str(self.root)

    def add_nic(self, nic: Nic) -> None:
        """``class/net/<if>`` links into ``devices/``, as in the real sysfs."""
        if nic.pci:
            parent = self.root / "devices" / "pci0000:00" / nic.pci
            devdir = parent / "net" / nic.name
        else:
            parent = None
            devdir = self.root / "devices" / "virtual" / "net" / nic.name
        devdir.mkdir(parents=True, exist_ok=True)
        files = {
            "address": nic.mac,
            "mtu": str(nic.mtu),
            "operstate": nic.operstate,
            "carrier": "" if nic.carrier is None else str(nic.carrier),
            "speed": "" if nic.speed is None else str(nic.speed),
            "type": "1",
        }
        for name, value in files.items():
            (devdir / name).write_text(value + "\n")
        if nic.carrier is None:
            self.einval.add(str(self.root / "class" / "net" / nic.name / "carrier"))
        if nic.speed is None:
            self.einval.add(str(self.root / "class" / "net" / nic.name / "speed"))
        classdir = self.root / "class" / "net"
        classdir.mkdir(parents=True, exist_ok=True)
        _relink(classdir / nic.name, devdir)
        if parent is not None:
            _relink(devdir / "device", parent)
            if nic.driver:
                drv = self.root / "bus" / "pci" / "drivers" / nic.driver
                drv.mkdir(parents=True, exist_ok=True)
                _relink(parent / "driver", drv)

    def remove_nic(self, name: str) -> None:
        (self.root / "class" / "net" / name).unlink()


def _relink(link: Path, target: Path) -> None:
    """A relative symlink, as sysfs makes them."""
    if link.is_symlink():
        link.unlink()
    link.symlink_to(os.path.relpath(target, link.parent))


def einval_reader(read: Callable[[str], str], paths: Iterable[str]) -> Callable[[str], str]:
    """``read`` that fails like the kernel for ``paths``: ``OSError(EINVAL)`` from ``read()``."""
    failing = {os.path.normpath(p) for p in paths}

    def reader(path: str) -> str:
        if os.path.normpath(path) in failing:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        return read(path)

    return reader
