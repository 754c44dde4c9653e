"""The ``storage`` section: mounts with usage and a stale check, and block-device counters.

A ``statvfs`` on a dead NFS or Lustre server blocks in the kernel for minutes (hard mounts:
forever), and no Python code can interrupt it. So every call runs on a small pool of
**daemon** threads and the sample waits at most ``budget_s`` for all of them: a mount whose
call has not returned is reported ``stale`` and is not called again while that call is stuck,
so one dead mount holds at most one thread. ``concurrent.futures.ThreadPoolExecutor`` cannot
do this job: its workers are joined at interpreter exit, so one stuck call would hang the
agent's exit too. (NFS waits are TASK_KILLABLE, so the kernel does let the process die.)

The mount table comes from ``/proc/self/mountinfo`` and is re-parsed only when the kernel
says it changed (``poll`` gives POLLPRI on that file after any mount or unmount), because a
Kubernetes node can carry thousands of lines.
"""

from __future__ import annotations

import os
import re
import select
import threading
import time
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
)

from tidectl.agents.probes.base import Probe, Section, describe_error
from tidectl.agents.probes.fsread import HeldFile

#: Filesystems worth watching, by ``fstype`` as mountinfo spells it, and their ``kind``.
#: Everything else (proc, sysfs, cgroup, overlay, squashfs, nsfs, vfat...) is dropped.
DEFAULT_FSTYPES: Dict[str, str] = {
    "ext2": "local",
    "ext3": "local",
    "ext4": "local",
    "xfs": "local",
    "btrfs": "local",
    "zfs": "local",
    "f2fs": "local",
    "bcachefs": "local",
    "nfs": "network",
    "nfs4": "network",
    "cifs": "network",
    "smb3": "network",
    "lustre": "parallel",
    "gpfs": "parallel",  # IBM Storage Scale
    "beegfs": "parallel",
    "ceph": "parallel",  # the kernel CephFS client
    "fuse.ceph-fuse": "parallel",
    "glusterfs": "parallel",
    "fuse.glusterfs": "parallel",
    "wekafs": "parallel",
    "fuse.wekafs": "parallel",
    "panfs": "parallel",
    "orangefs": "parallel",
    "fuse.juicefs": "parallel",
    "fuse.quobyte": "parallel",
    "tmpfs": "memory",
}

#: Memory filesystems are kept only where jobs put data: /dev/shm (NCCL, DALI, PyTorch
#: DataLoader workers). /run, /run/user/* and friends are system noise.
MEMORY_MOUNTPOINTS = ("/dev/shm",)

#: Block devices that are not disks: loop (snaps, images), RAM disks, compressed swap.
SKIP_DISK_PREFIXES = ("loop", "ram", "zram")

_SECTOR = 512  # /proc/diskstats counts 512-byte sectors whatever the device's block size

_ESCAPE = re.compile(rb"\\([0-7]{3})")


def unescape(raw: bytes) -> str:
    """A mountinfo field as a path: the kernel writes space, tab, newline, backslash as \\ooo.

    Decoded like ``os.fsdecode`` (surrogateescape) so that the exact bytes reach ``statvfs``.
    """
    if b"\\" in raw:
        raw = _ESCAPE.sub(lambda m: bytes((int(m.group(1), 8),)), raw)
    return os.fsdecode(raw)


def display(path: str) -> str:
    """``path`` safe for JSON: bytes that are not UTF-8 become U+FFFD."""
    if path.isascii():
        return path
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class MountEntry(NamedTuple):
    """One line of mountinfo, the fields a probe needs."""

    dev: str  # major:minor of the filesystem (the same for every bind mount of it)
    root: str  # the directory of the filesystem mounted here ("/" unless a bind mount)
    mountpoint: str
    fstype: str
    device: str  # the mount source: /dev/sda1, server:/export, fs1, beegfs_nodev...
    options: str  # as /proc/mounts shows them: per-mount flags, then filesystem options


def parse_mountinfo(data: bytes) -> List[MountEntry]:
    """/proc/self/mountinfo lines:
    ``id parent maj:min root mountpoint opts [optional...] - fstype source super_opts``."""
    out: List[MountEntry] = []
    for line in data.splitlines():
        parts = line.split(b" ")
        try:
            sep = parts.index(b"-", 6)
        except ValueError:
            continue
        if len(parts) < sep + 3:
            continue
        mount_opts = parts[5].decode("ascii", "replace")
        super_opts = parts[sep + 3].decode("utf-8", "replace") if len(parts) > sep + 3 else ""
        seen = set(mount_opts.split(","))
        extra = [o for o in super_opts.split(",") if o and o not in seen and o not in ("rw", "ro")]
        out.append(
            MountEntry(
                dev=parts[2].decode("ascii", "replace"),
                root=unescape(parts[3]),
                mountpoint=unescape(parts[4]),
                fstype=unescape(parts[sep + 1]),
                device=unescape(parts[sep + 2]),
                options=",".join([mount_opts, *extra]) if extra else mount_opts,
            )
        )
    return out


class Mount(NamedTuple):
    """A mount the probe watches."""

    entry: MountEntry
    kind: str


def select_mounts(entries: List[MountEntry], fstypes: Mapping[str, str]) -> List[Mount]:
    """The mounts worth reporting, each filesystem once.

    A later mount on the same mountpoint hides the earlier one (statvfs sees the top), and a
    filesystem mounted in several places (bind mounts: kubelet subPaths, container volumes)
    is one filesystem with one usage: it is reported once, at the first mount of its root
    ("/" in the filesystem), else at its first mount.
    """
    on_top: Dict[str, MountEntry] = {}
    for entry in entries:
        kind = fstypes.get(entry.fstype)
        if kind is None:
            continue
        if kind == "memory" and entry.mountpoint not in MEMORY_MOUNTPOINTS:
            continue
        on_top.pop(entry.mountpoint, None)  # re-insert: order of the visible mount
        on_top[entry.mountpoint] = entry
    chosen: Dict[str, MountEntry] = {}
    for entry in on_top.values():
        have = chosen.get(entry.dev)
        if have is None or (have.root != "/" and entry.root == "/"):
            chosen[entry.dev] = entry
    keep = {id(e) for e in chosen.values()}
    return [Mount(e, fstypes[e.fstype]) for e in on_top.values() if id(e) in keep]


def _is_partition(name: str, names: Any) -> bool:
    """sda1 of sda, nvme0n1p2 of nvme0n1, mmcblk0p1 of mmcblk0: counted in the disk already."""
    base = name.rstrip("0123456789")
    if base == name:
        return False
    if base in names:
        return True
    return base.endswith("p") and base[-2:-1].isdigit() and base[:-1] in names


def whole_disks(names: Sequence[str]) -> List[int]:
    """Which of /proc/diskstats' devices are whole disks (no partitions, loop, RAM or zram
    devices), as indexes into ``names``."""
    candidates = [
        (i, name) for i, name in enumerate(names) if not name.startswith(SKIP_DISK_PREFIXES)
    ]
    present = {name for _, name in candidates}
    return [i for i, name in candidates if not _is_partition(name, present)]


def _disk_counters(p: Sequence[Any]) -> Dict[str, int]:
    # int() takes str and bytes alike
    return {
        "reads": int(p[3]),
        "writes": int(p[7]),
        "read_bytes": int(p[5]) * _SECTOR,
        "write_bytes": int(p[9]) * _SECTOR,
        "io_ms": int(p[12]),
    }


def parse_diskstats(text: str) -> Dict[str, Dict[str, int]]:
    """/proc/diskstats counters of whole disks (no partitions, loop, RAM or zram devices)."""
    rows = [parts for parts in (line.split() for line in text.splitlines()) if len(parts) >= 14]
    return {rows[i][2]: _disk_counters(rows[i]) for i in whole_disks([r[2] for r in rows])}


class DiskStats:
    """/proc/diskstats, read each tick through a held descriptor.

    Which devices are whole disks is worked out again only when the list of devices changes:
    it is most of the parsing, and a node's disks rarely change.
    """

    def __init__(self, path: str) -> None:
        self._file = HeldFile(path)
        self._names: Optional[List[bytes]] = None
        self._keep: List[Tuple[int, str]] = []  # (row index, device name) of the whole disks

    def read(self) -> Dict[str, Dict[str, int]]:
        rows = [
            parts for parts in map(bytes.split, self._file.read().splitlines()) if len(parts) >= 14
        ]
        names = [parts[2] for parts in rows]
        if names != self._names:
            decoded = [name.decode("ascii", "replace") for name in names]
            self._keep = [(i, decoded[i]) for i in whole_disks(decoded)]
            self._names = names
        return {name: _disk_counters(rows[i]) for i, name in self._keep}

    def close(self) -> None:
        self._file.close()


# --- the stale check -----------------------------------------------------------------------


class _Batch:
    """One sample's calls: workers take the next path until none is left."""

    __slots__ = ("done", "left", "next", "paths", "results")

    def __init__(self, paths: List[str]) -> None:
        self.paths = paths
        self.results: List[Any] = [None] * len(paths)  # statvfs_result, or the exception
        self.next = 0
        self.left = len(paths)
        self.done = threading.Lock()  # held until the last call returns
        self.done.acquire()


class StatvfsChecker:
    """``statvfs`` on daemon threads, waited for with a deadline.

    One thread takes the calls of a batch in turn. While a batch waits and every thread
    that is not parked is inside a call, a parked one is woken or, up to ``max_threads``,
    a new one started, so one hung mount does not leave the healthy ones unchecked. A path
    whose call is still running must not be passed to :meth:`run` again (see
    :meth:`running`): then stuck threads never outnumber stuck mounts.

    Threads hand work over with bare locks used as semaphores, not ``Condition``/``Event``:
    this runs every tick, and each of those costs several more lock operations and syscalls.
    """

    def __init__(self, statvfs: Callable[[str], Any], max_threads: int = 8) -> None:
        self._statvfs = statvfs
        self._max_threads = max(1, max_threads)
        self._mutex = threading.Lock()  # guards every field below; held briefly
        self._go = threading.Lock()  # a binary semaphore: released = one parked thread may run
        self._go.acquire()
        self._go_posted = False
        self._batch: Optional[_Batch] = None
        self._running: Dict[str, float] = {}  # path -> time.monotonic() when its call began
        self._threads = 0
        self._parked = 0
        self._serial = 0
        self._closed = False

    @property
    def threads(self) -> int:
        """Threads alive now, stuck ones included."""
        with self._mutex:
            return self._threads

    def running(self) -> Dict[str, float]:
        """Paths whose call has not returned, with the monotonic time it began."""
        with self._mutex:
            return dict(self._running)

    def run(self, paths: List[str], timeout: float) -> Tuple[List[Any], Dict[str, float]]:
        """Call statvfs on each path; wait at most ``timeout`` seconds in all.

        Returns a result per path (None when the call did not finish: still running, or
        never started because every thread was stuck) and the calls still running then.
        """
        batch = _Batch(paths)
        deadline = time.monotonic() + timeout
        step = max(timeout / 5.0, 0.005)
        with self._mutex:
            if self._closed:
                raise RuntimeError("the statvfs checker is closed")
            if paths:
                self._batch = batch
                self._help()
        while paths:
            left = deadline - time.monotonic()
            if left <= 0 or batch.done.acquire(True, min(step, left)):
                break
            with self._mutex:
                busy = self._threads - self._parked
                if batch.next < len(paths) and busy <= len(self._running):
                    self._help()
        with self._mutex:
            if self._batch is batch:
                self._batch = None  # paths not started yet stay unstarted
            return list(batch.results), dict(self._running)

    def close(self) -> None:
        """Parked threads exit now; stuck ones when their call returns (they are daemons)."""
        with self._mutex:
            self._closed = True
            self._batch = None
            self._post()

    def _help(self) -> None:
        """Wake a parked thread, else start one. Caller holds the mutex."""
        if self._parked > 0:
            self._post()
        elif self._threads < self._max_threads:
            self._threads += 1
            self._serial += 1
            thread = threading.Thread(
                target=self._work, name="tidectl-statvfs-%d" % self._serial, daemon=True
            )
            thread.start()

    def _post(self) -> None:
        # Caller holds the mutex. A second post before a thread took the first is one post.
        if not self._go_posted and self._parked > 0:
            self._go_posted = True
            self._go.release()

    def _work(self) -> None:
        while True:
            self._drain()
            with self._mutex:
                if self._closed:
                    self._threads -= 1
                    self._post()  # pass the wake-up on: every parked thread must exit
                    return
                self._parked += 1
            self._go.acquire()
            with self._mutex:
                self._parked -= 1
                self._go_posted = False

    def _drain(self) -> None:
        """Take calls from the current batch until none is left."""
        mutex = self._mutex
        while True:
            with mutex:
                batch = self._batch
                if self._closed or batch is None or batch.next >= len(batch.paths):
                    return
                index = batch.next
                batch.next += 1
                path = batch.paths[index]
                self._running[path] = time.monotonic()
            try:
                result: Any = self._statvfs(path)
            except Exception as exc:  # reported on the mount, not raised
                result = exc
            with mutex:
                del self._running[path]
                # A late answer lands in a batch nobody reads: the next sample asks again.
                batch.results[index] = result
                batch.left -= 1
                if batch.left == 0:
                    batch.done.release()


# --- the mount table -----------------------------------------------------------------------


class MountTable:
    """mountinfo, re-parsed only when it changed.

    On procfs, ``poll`` reports POLLPRI|POLLERR once per change of the mount namespace
    (fs/proc_namespace.c ``mounts_poll``). A regular file (a test's fake) has no such event:
    it is re-read when its inode, size or mtime change.
    """

    def __init__(self, path: str, fstypes: Mapping[str, str]) -> None:
        self._path = path
        self._fstypes = fstypes
        self._fd: Optional[int] = None
        self._poll: Any = None
        self._stat_key: Optional[Tuple[int, int, int]] = None
        self._lock = threading.Lock()
        self._mounts: Optional[List[Mount]] = None

    def mounts(self) -> List[Mount]:
        with self._lock:
            if self._mounts is None or self._changed():
                self._mounts = select_mounts(parse_mountinfo(self._read()), self._fstypes)
            return self._mounts

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._mounts = None

    def _changed(self) -> bool:
        if self._poll is not None:
            # Registered for POLLPRI|POLLERR only: any event at all is a reason to re-read.
            return bool(self._poll.poll(0))
        try:
            st = os.stat(self._path)
        except OSError:
            return True
        return (st.st_ino, st.st_size, st.st_mtime_ns) != self._stat_key

    def _read(self) -> bytes:
        if self._fd is None:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            st = os.fstat(self._fd)
            if st.st_size == 0 and hasattr(select, "poll"):  # procfs: sizes read as 0
                self._poll = select.poll()
                self._poll.register(self._fd, select.POLLPRI | select.POLLERR)
        if self._poll is None:
            # A regular file may be replaced (rename): read it by path, note its identity.
            os.close(self._fd)
            self._fd = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
            st = os.fstat(self._fd)
            self._stat_key = (st.st_ino, st.st_size, st.st_mtime_ns)
        else:
            self._poll.poll(0)  # consume a pending change event: we read the new table now
        os.lseek(self._fd, 0, os.SEEK_SET)
        parts = []
        while True:
            chunk = os.read(self._fd, 1 << 16)
            parts.append(chunk)
            if len(chunk) < 1 << 16:  # procfs fills a read as far as the file goes
                break
        return b"".join(parts)


# --- the probe -----------------------------------------------------------------------------


def usage(st: Any) -> Dict[str, Optional[int]]:
    """Sizes and inode counts of an ``os.statvfs_result``; inodes null where the filesystem
    has no fixed count (btrfs reports 0)."""
    frsize = st.f_frsize or st.f_bsize
    files = st.f_files
    return {
        "size_bytes": st.f_blocks * frsize,
        "used_bytes": (st.f_blocks - st.f_bfree) * frsize,
        "avail_bytes": st.f_bavail * frsize,
        "inodes_total": files if files else None,
        "inodes_used": files - st.f_ffree if files else None,
    }


_NO_USAGE: Dict[str, Optional[int]] = dict.fromkeys(
    ("size_bytes", "used_bytes", "avail_bytes", "inodes_total", "inodes_used")
)


#: Kinds of filesystem whose ``statvfs`` is called on the sampling thread itself. Local disks
#: and tmpfs answer it from counters in memory, without I/O, and handing the call to a
#: thread costs more CPU than the call (two thread switches a tick). Should one still hang
#: (a wedged driver), the whole probe is late, and the runner's deadline reports the
#: storage section as timed out: the agent goes on.
INLINE_KINDS = ("local", "memory")


class StorageProbe(Probe):
    """Mounts (local, network, parallel, /dev/shm) with usage, stale check and disk I/O.

    ``statvfs`` is the call made for each mount (tests inject one that blocks);
    ``include_fstypes`` maps the filesystem types kept to their ``kind``; ``max_threads``
    bounds the stale check's threads, stuck ones included; ``inline_kinds`` are the kinds
    checked without the stale check (see INLINE_KINDS). When mountinfo or diskstats cannot
    be read, that half is null and named in ``field_errors``.
    """

    name = "storage"

    def __init__(
        self,
        proc_root: str = "/proc",
        budget_s: float = 0.5,
        statvfs: Callable[[str], Any] = os.statvfs,
        include_fstypes: Optional[Mapping[str, str]] = None,
        max_threads: int = 8,
        *,
        inline_kinds: Collection[str] = INLINE_KINDS,
    ) -> None:
        self._budget_s = budget_s
        self._statvfs = statvfs
        self._inline_kinds = frozenset(inline_kinds)
        self._disks = DiskStats(os.path.join(proc_root, "diskstats"))
        fstypes = DEFAULT_FSTYPES if include_fstypes is None else dict(include_fstypes)
        self._table = MountTable(os.path.join(proc_root, "self", "mountinfo"), fstypes)
        self._checker = StatvfsChecker(statvfs, max_threads=max_threads)
        # Per mount of the table last seen: the fixed head of its record, and whether its
        # statvfs is called inline; rebuilt only when the table changes.
        self._plan_of: Optional[List[Mount]] = None
        self._plan: List[Tuple[str, Section, bool]] = []
        self._threaded: List[str] = []

    @property
    def checker(self) -> StatvfsChecker:
        """The thread pool of the stale check (for tests and the agent's own health)."""
        return self._checker

    def facts(self) -> Section:
        return {
            "mounts": [
                {
                    "mountpoint": display(m.entry.mountpoint),
                    "device": display(m.entry.device),
                    "fstype": m.entry.fstype,
                    "kind": m.kind,
                    "options": m.entry.options,
                }
                for m in self._table.mounts()
            ]
        }

    def sample(self) -> Section:
        section: Section = {"mounts": None, "disks": None}
        errors: Dict[str, str] = {}
        try:
            section["mounts"] = self._sample_mounts()
        except Exception as exc:  # the disks can still be told
            errors["mounts"] = describe_error(exc)
            failed: Exception = exc
        try:
            section["disks"] = self._disks.read()
        except Exception as exc:
            errors["disks"] = describe_error(exc)
            failed = exc
        if len(errors) == 2:
            raise failed
        if errors:
            section["field_errors"] = errors
        return section

    def _mount_plan(self) -> Tuple[List[Tuple[str, Section, bool]], List[str]]:
        """Per mount: its path, the fixed head of its record, whether it is checked inline;
        and the paths for the stale check. Rebuilt only when the mount table changes."""
        mounts = self._table.mounts()
        if mounts is not self._plan_of:  # the table keeps its list until mountinfo changes
            self._plan = [
                (
                    m.entry.mountpoint,
                    {
                        "mountpoint": display(m.entry.mountpoint),
                        "fstype": m.entry.fstype,
                        "kind": m.kind,
                    },
                    m.kind in self._inline_kinds,
                )
                for m in mounts
            ]
            self._threaded = [path for path, _, inline in self._plan if not inline]
            self._plan_of = mounts
        return self._plan, self._threaded

    def _sample_mounts(self) -> List[Section]:
        plan, threaded = self._mount_plan()
        answers: Dict[str, Any] = {}
        stuck: Dict[str, float] = {}
        running: Dict[str, float] = {}
        if threaded:
            stuck = self._checker.running()
            todo = [path for path in threaded if path not in stuck]
            results, running = self._checker.run(todo, self._budget_s)
            answers = dict(zip(todo, results))  # noqa: B905 - same length; strict= is 3.10+
        statvfs = self._statvfs
        for path, _, inline in plan:
            if inline:
                try:
                    answers[path] = statvfs(path)
                except Exception as exc:  # reported on the mount
                    answers[path] = exc
        now = time.monotonic()
        out: List[Section] = []
        for path, head, _ in plan:
            record = head.copy()
            answer = answers.get(path)
            stale = False
            error: Optional[str] = None
            if answer is None:
                began = running.get(path, stuck.get(path))
                if began is not None:
                    stale = True
                    error = "statvfs has not returned after %.1f s" % (now - began)
                else:
                    error = "not checked: every statvfs thread is stuck on other mounts"
                record.update(_NO_USAGE)
            elif isinstance(answer, BaseException):
                error = describe_error(answer)
                record.update(_NO_USAGE)
            else:
                record.update(usage(answer))
            record["stale"] = stale
            record["error"] = error
            out.append(record)
        return out

    def close(self) -> None:
        self._checker.close()
        self._table.close()
        self._disks.close()
