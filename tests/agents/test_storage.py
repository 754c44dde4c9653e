"""The storage probe: mountinfo and diskstats parsing, usage, and the stale-mount check."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes.procfs import (
    HPC_MOUNTS,
    Disk,
    FakeProc,
    Mount,
    diskstats_text,
    mountinfo_text,
)
from tidectl.agents.probes.storage import (
    DEFAULT_FSTYPES,
    INLINE_KINDS,
    DiskStats,
    StorageProbe,
    parse_diskstats,
    parse_mountinfo,
    select_mounts,
    unescape,
)
from tidectl.agents.runner import Sampler

REPO = Path(__file__).resolve().parents[2]

#: The sample's mount record, exactly as docs/agent-protocol.md lists it.
MOUNT_KEYS = [
    "mountpoint",
    "fstype",
    "kind",
    "size_bytes",
    "used_bytes",
    "avail_bytes",
    "inodes_total",
    "inodes_used",
    "stale",
    "error",
]
DISK_KEYS = ["reads", "writes", "read_bytes", "write_bytes", "io_ms"]
FACT_KEYS = ["mountpoint", "device", "fstype", "kind", "options"]

#: What HPC_MOUNTS keeps, in order, with each kind.
KEPT = [
    ("/", "local"),
    ("/dev/shm", "memory"),
    ("/raid", "local"),
    ("/home", "network"),
    ("/lustre/scratch", "parallel"),
    ("/gpfs/fs1", "parallel"),
    ("/mnt/beegfs", "parallel"),
    ("/mnt/team data", "network"),
]

DISKS = [
    Disk(7, 0, "loop0", reads=57, sectors_read=2202, io_ms=12),
    Disk(1, 0, "ram0"),
    Disk(
        259,
        0,
        "nvme0n1",
        reads=81234,
        sectors_read=9_000_000,
        writes=4455,
        sectors_written=123_456,
        io_ms=31337,
    ),
    Disk(259, 1, "nvme0n1p1", reads=300, sectors_read=7000, writes=2, sectors_written=8),
    Disk(259, 2, "nvme0n1p2", reads=80000, sectors_read=8_990_000, writes=4453),
    Disk(8, 0, "sda", reads=10, sectors_read=80, writes=20, sectors_written=160, io_ms=5),
    Disk(8, 1, "sda1", reads=9, sectors_read=72),
    Disk(9, 0, "md0", reads=5000, sectors_read=40000, writes=6000, sectors_written=48000),
    Disk(253, 0, "dm-0", reads=7, sectors_read=56, writes=8, sectors_written=64, io_ms=3),
    Disk(252, 0, "zram0", reads=1, sectors_read=8),
    Disk(179, 0, "mmcblk0", reads=11, sectors_read=88),
    Disk(179, 1, "mmcblk0p1", reads=10, sectors_read=80),
]


def statvfs_result(
    size_blocks: int,
    free: int,
    avail: int,
    *,
    files: int = 1000,
    ffree: int = 400,
    frsize: int = 4096,
) -> os.statvfs_result:
    """A real ``os.statvfs_result`` (bsize, frsize, blocks, bfree, bavail, files, ffree,
    favail, flag, namemax)."""
    return os.statvfs_result(
        (frsize, frsize, size_blocks, free, avail, files, ffree, ffree, 0, 255)
    )


class FakeStatvfs:
    """statvfs over a table of answers; calls for ``block`` paths wait for ``release``.

    ``threads`` notes which thread made each path's last call.
    """

    def __init__(self, block: tuple[str, ...] = ()) -> None:
        self.block = set(block)
        self.release = threading.Event()
        self.calls: Counter[str] = Counter()
        self.answers: dict[str, os.statvfs_result | OSError] = {}
        self.threads: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str) -> os.statvfs_result:
        with self._lock:
            self.calls[path] += 1
            self.threads[path] = threading.get_ident()
        if path in self.block:
            self.release.wait()
        answer = self.answers.get(path, statvfs_result(1000, 250, 200))
        if isinstance(answer, OSError):
            raise answer
        return answer


@pytest.fixture
def proc(tmp_path: Path) -> FakeProc:
    fake = FakeProc(tmp_path / "proc")
    fake.write("self/mountinfo", mountinfo_text(HPC_MOUNTS))
    fake.write("diskstats", diskstats_text(DISKS))
    return fake


def make_probe(
    proc: FakeProc, statvfs: Callable[[str], os.statvfs_result], **kw: object
) -> StorageProbe:
    return StorageProbe(proc_root=proc.path, statvfs=statvfs, **kw)  # type: ignore[arg-type]


# --- parsers -------------------------------------------------------------------------------


def test_mountinfo_parses_every_line_and_unescapes_paths() -> None:
    entries = parse_mountinfo(mountinfo_text(HPC_MOUNTS).encode())
    assert len(entries) == len(HPC_MOUNTS)
    team = next(e for e in entries if e.fstype == "nfs")
    assert team.mountpoint == "/mnt/team data"
    assert team.device == "10.1.0.9:/vol/team data"
    assert team.dev == "0:63"
    assert team.root == "/"
    lustre = next(e for e in entries if e.fstype == "lustre")
    assert lustre.device == "10.10.0.1@o2ib:10.10.0.2@o2ib:/scratch"


def test_mountinfo_options_read_like_proc_mounts() -> None:
    # Per-mount flags first, then the filesystem's own options without repeating rw/ro.
    home = next(
        e for e in parse_mountinfo(mountinfo_text(HPC_MOUNTS).encode()) if e.mountpoint == "/home"
    )
    assert home.options.startswith("rw,relatime,vers=4.2,rsize=1048576,")
    assert home.options.split(",").count("rw") == 1
    assert "addr=10.1.0.5" in home.options.split(",")


def test_unescape_handles_every_escape_and_non_utf8_bytes() -> None:
    assert unescape(b"/mnt/a\\040b\\011c\\012d\\134e") == "/mnt/a b\tc\nd\\e"
    raw = unescape(b"/mnt/caf\xe9")  # Latin-1 name: bytes that are not UTF-8
    assert os.fsencode(raw) == b"/mnt/caf\xe9"  # statvfs gets the exact bytes back


def test_mountinfo_with_many_optional_fields() -> None:
    line = (
        b"36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 propagate_from:2 - ext3 "
        b"/dev/root rw,errors=continue\n"
    )
    (entry,) = parse_mountinfo(line)
    assert (entry.root, entry.mountpoint, entry.fstype, entry.device) == (
        "/mnt1",
        "/mnt2",
        "ext3",
        "/dev/root",
    )
    assert entry.options == "rw,noatime,errors=continue"


def test_select_keeps_real_filesystems_and_drops_pseudo_ones() -> None:
    mounts = select_mounts(parse_mountinfo(mountinfo_text(HPC_MOUNTS).encode()), DEFAULT_FSTYPES)
    assert [(m.entry.mountpoint, m.kind) for m in mounts] == KEPT
    dropped = {m.entry.fstype for m in mounts} & {
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "cgroup2",
        "debugfs",
        "autofs",
        "vfat",
        "squashfs",
        "overlay",
        "nsfs",
        "fusectl",
    }
    assert dropped == set()
    assert "/run" not in [m.entry.mountpoint for m in mounts]  # tmpfs outside /dev/shm


def test_select_reports_bind_mounts_once_and_the_top_of_an_overmount() -> None:
    table = [
        Mount("/", "ext4", "/dev/sda2", dev="8:2", optional=""),
        # kubelet subPath: the same filesystem again, a subdirectory bound elsewhere
        Mount(
            "/var/lib/kubelet/pods/x/volume-subpaths/data",
            "ext4",
            "/dev/sda2",
            dev="8:2",
            root="/srv/data",
        ),
        Mount("/data", "xfs", "/dev/sdb1", dev="8:17"),
        Mount("/data", "nfs4", "nas:/data", dev="0:80"),  # mounted over the xfs one
        # a bind of an NFS subdirectory first, then the export itself
        Mount("/scratch/alice", "nfs4", "nas:/scratch", dev="0:81", root="/alice"),
        Mount("/scratch", "nfs4", "nas:/scratch", dev="0:81"),
    ]
    mounts = select_mounts(parse_mountinfo(mountinfo_text(table).encode()), DEFAULT_FSTYPES)
    assert [(m.entry.mountpoint, m.entry.fstype) for m in mounts] == [
        ("/", "ext4"),
        ("/data", "nfs4"),
        ("/scratch", "nfs4"),
    ]


def test_include_fstypes_overrides_the_table(proc: FakeProc) -> None:
    probe = make_probe(proc, FakeStatvfs(), include_fstypes={"gpfs": "parallel", "vfat": "local"})
    try:
        got = [(m["mountpoint"], m["kind"]) for m in probe.facts()["mounts"]]
    finally:
        probe.close()
    assert got == [("/boot/efi", "local"), ("/gpfs/fs1", "parallel")]


def test_diskstats_keeps_whole_disks_and_converts_sectors() -> None:
    disks = parse_diskstats(diskstats_text(DISKS))
    assert list(disks) == ["nvme0n1", "sda", "md0", "dm-0", "mmcblk0"]
    assert disks["nvme0n1"] == {
        "reads": 81234,
        "writes": 4455,
        "read_bytes": 9_000_000 * 512,
        "write_bytes": 123_456 * 512,
        "io_ms": 31337,
    }
    assert disks["dm-0"]["write_bytes"] == 64 * 512


def test_diskstats_old_kernel_layout_of_14_fields() -> None:
    disks = parse_diskstats(diskstats_text(DISKS, fields=14))
    assert disks["sda"] == {
        "reads": 10,
        "writes": 20,
        "read_bytes": 80 * 512,
        "write_bytes": 160 * 512,
        "io_ms": 5,
    }


# --- the probe -----------------------------------------------------------------------------


def test_diskstats_reader_follows_new_devices_and_fresh_counters(proc: FakeProc) -> None:
    reader = DiskStats(os.path.join(proc.path, "diskstats"))
    try:
        assert reader.read() == parse_diskstats(diskstats_text(DISKS))
        # Same devices, new counters: read afresh (the descriptor is held, not the values).
        busier = [*DISKS[:5], Disk(8, 0, "sda", reads=99, sectors_read=800), *DISKS[6:]]
        proc.write("diskstats", diskstats_text(busier))
        assert reader.read()["sda"]["reads"] == 99
        # A disk and its partition appear: the choice of whole disks is made again.
        more = [*busier, Disk(259, 3, "nvme1n1", reads=5), Disk(259, 4, "nvme1n1p1", reads=4)]
        proc.write("diskstats", diskstats_text(more, fields=14))
        disks = reader.read()
        assert list(disks) == ["nvme0n1", "sda", "md0", "dm-0", "mmcblk0", "nvme1n1"]
        assert disks == parse_diskstats(diskstats_text(more, fields=14))
    finally:
        reader.close()


def test_facts_list_mounts_with_device_kind_and_options(proc: FakeProc) -> None:
    probe = make_probe(proc, FakeStatvfs())
    try:
        facts = probe.facts()
    finally:
        probe.close()
    assert list(facts) == ["mounts"]
    assert [list(m) for m in facts["mounts"]] == [FACT_KEYS] * len(KEPT)
    by_path = {m["mountpoint"]: m for m in facts["mounts"]}
    assert by_path["/mnt/beegfs"] == {
        "mountpoint": "/mnt/beegfs",
        "device": "beegfs_nodev",
        "fstype": "beegfs",
        "kind": "parallel",
        "options": "rw,relatime,cfgFile=/etc/beegfs/beegfs-client.conf",
    }
    assert by_path["/gpfs/fs1"]["device"] == "fs1"
    assert by_path["/mnt/team data"]["device"] == "10.1.0.9:/vol/team data"
    json.dumps(facts, allow_nan=False)


def test_sample_reports_usage_inodes_and_disks(proc: FakeProc) -> None:
    fake = FakeStatvfs()
    fake.answers["/raid"] = statvfs_result(1_000_000, 250_000, 200_000, files=5000, ffree=1000)
    fake.answers["/lustre/scratch"] = statvfs_result(10, 4, 3, files=0, ffree=0, frsize=1 << 20)
    fake.answers["/home"] = OSError(errno.ESTALE, os.strerror(errno.ESTALE), "/home")
    probe = make_probe(proc, fake)
    try:
        section = probe.sample()
    finally:
        probe.close()
    assert list(section) == ["mounts", "disks"]
    assert [list(m) for m in section["mounts"]] == [MOUNT_KEYS] * len(KEPT)
    by_path = {m["mountpoint"]: m for m in section["mounts"]}
    assert by_path["/raid"] == {
        "mountpoint": "/raid",
        "fstype": "xfs",
        "kind": "local",
        "size_bytes": 1_000_000 * 4096,
        "used_bytes": 750_000 * 4096,
        "avail_bytes": 200_000 * 4096,
        "inodes_total": 5000,
        "inodes_used": 4000,
        "stale": False,
        "error": None,
    }
    # A filesystem without an inode count (f_files == 0) has no inode numbers.
    lustre = by_path["/lustre/scratch"]
    assert (lustre["size_bytes"], lustre["inodes_total"], lustre["inodes_used"]) == (
        10 << 20,
        None,
        None,
    )
    # An answer that is an error is an error, not a stale mount: the server did answer.
    home = by_path["/home"]
    assert home["stale"] is False
    assert home["size_bytes"] is None
    assert "Stale file handle" in home["error"]
    assert fake.calls["/mnt/team data"] == 1  # the unescaped path reaches statvfs
    assert list(section["disks"]) == ["nvme0n1", "sda", "md0", "dm-0", "mmcblk0"]
    assert [list(d) for d in section["disks"].values()] == [DISK_KEYS] * 5
    json.dumps(section, allow_nan=False)


def test_mount_table_changes_are_picked_up(proc: FakeProc) -> None:
    probe = make_probe(proc, FakeStatvfs())
    try:
        assert len(probe.sample()["mounts"]) == len(KEPT)
        extra = Mount("/mnt/weka", "wekafs", "weka01/default", dev="0:90")
        proc.write("self/mountinfo", mountinfo_text([*HPC_MOUNTS, extra]))
        mounts = probe.sample()["mounts"]
    finally:
        probe.close()
    assert mounts[-1]["mountpoint"] == "/mnt/weka"
    assert mounts[-1]["kind"] == "parallel"


# --- the stale check -----------------------------------------------------------------------

BUDGET = 0.3
SLACK = 0.25


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_hung_mount_is_stale_within_budget_and_not_called_again(proc: FakeProc) -> None:
    fake = FakeStatvfs(block=("/lustre/scratch",))
    probe = make_probe(proc, fake, budget_s=BUDGET)
    try:
        start = time.monotonic()
        first = {m["mountpoint"]: m for m in probe.sample()["mounts"]}
        took = time.monotonic() - start
        assert BUDGET - 0.05 <= took <= BUDGET + SLACK
        stuck = first["/lustre/scratch"]
        assert stuck["stale"] is True
        assert stuck["size_bytes"] is None
        assert stuck["error"].startswith("statvfs has not returned after ")
        healthy = [m for p, m in first.items() if p != "/lustre/scratch"]
        assert all(m["stale"] is False and m["error"] is None for m in healthy)
        assert all(m["size_bytes"] == 1000 * 4096 for m in healthy)

        # Still stuck: no second call, and the sample no longer waits for it.
        start = time.monotonic()
        second = {m["mountpoint"]: m for m in probe.sample()["mounts"]}
        assert time.monotonic() - start < BUDGET
        assert second["/lustre/scratch"]["stale"] is True
        assert fake.calls["/lustre/scratch"] == 1
        assert fake.calls["/home"] == 2
        assert probe.checker.threads <= 2  # the stuck one and the one that took over

        fake.release.set()
        wait_until(lambda: probe.checker.running() == {})
        third = {m["mountpoint"]: m for m in probe.sample()["mounts"]}
        assert third["/lustre/scratch"]["stale"] is False
        assert third["/lustre/scratch"]["error"] is None
        assert third["/lustre/scratch"]["size_bytes"] == 1000 * 4096
        assert fake.calls["/lustre/scratch"] == 2
    finally:
        fake.release.set()
        probe.close()


def test_stuck_threads_are_bounded_when_many_mounts_hang(proc: FakeProc) -> None:
    hung = ("/home", "/lustre/scratch", "/gpfs/fs1", "/mnt/beegfs", "/mnt/team data")
    fake = FakeStatvfs(block=hung)
    probe = make_probe(proc, fake, budget_s=BUDGET, max_threads=3)
    try:
        for _ in range(4):
            start = time.monotonic()
            mounts = {m["mountpoint"]: m for m in probe.sample()["mounts"]}
            assert time.monotonic() - start <= BUDGET + SLACK
            assert probe.checker.threads <= 3
            assert sum(fake.calls[p] for p in hung) <= 3  # one call per stuck thread, ever
            # A mount never reached is unknown, not stale.
            for path in hung:
                m = mounts[path]
                assert m["stale"] is (fake.calls[path] == 1)
                assert m["error"] is not None
        assert fake.calls["/"] >= 1
    finally:
        fake.release.set()
        wait_until(lambda: probe.checker.running() == {})
    recovered = probe.sample()["mounts"]
    probe.close()
    assert all(m["stale"] is False and m["error"] is None for m in recovered)


def test_a_slow_mount_does_not_stop_the_others_being_checked(proc: FakeProc) -> None:
    # The first thread hangs on "/", the helper started for it hangs on /dev/shm: a third
    # one is started, so the rest are still answered within the same sample. (Local mounts
    # go through the stale check here because inline_kinds is empty.)
    fake = FakeStatvfs(block=("/", "/dev/shm"))
    probe = make_probe(proc, fake, budget_s=BUDGET, inline_kinds=())
    try:
        mounts = {m["mountpoint"]: m for m in probe.sample()["mounts"]}
    finally:
        fake.release.set()
        probe.close()
    assert mounts["/"]["stale"] is True
    assert mounts["/dev/shm"]["stale"] is True
    assert all(mounts[p]["error"] is None for p, _ in KEPT[2:])


def test_a_slow_network_mount_does_not_stop_the_others_being_checked(proc: FakeProc) -> None:
    # The same with the default inline kinds: the stale check's first two mounts hang.
    fake = FakeStatvfs(block=("/home", "/lustre/scratch"))
    probe = make_probe(proc, fake, budget_s=BUDGET)
    try:
        mounts = {m["mountpoint"]: m for m in probe.sample()["mounts"]}
    finally:
        fake.release.set()
        probe.close()
    assert mounts["/home"]["stale"] is True
    assert mounts["/lustre/scratch"]["stale"] is True
    others = [p for p, _ in KEPT if p not in ("/home", "/lustre/scratch")]
    assert all(mounts[p]["error"] is None and mounts[p]["size_bytes"] for p in others)


# --- local mounts inline --------------------------------------------------------------------


def test_local_and_memory_mounts_are_checked_inline_and_the_rest_on_threads(
    proc: FakeProc,
) -> None:
    assert INLINE_KINDS == ("local", "memory")
    fake = FakeStatvfs()
    fake.answers["/raid"] = statvfs_result(1_000_000, 250_000, 200_000, files=5000, ffree=1000)
    fake.answers["/home"] = OSError(errno.ESTALE, os.strerror(errno.ESTALE), "/home")
    fake.answers["/"] = OSError(errno.EIO, os.strerror(errno.EIO), "/")
    probe = make_probe(proc, fake)
    try:
        section = probe.sample()
    finally:
        probe.close()
    me = threading.get_ident()
    kinds = dict(KEPT)
    for path, kind in kinds.items():
        assert (fake.threads[path] == me) is (kind in ("local", "memory")), path
    # Both ways give the same record, errors included.
    threaded_fake = FakeStatvfs()
    threaded_fake.answers = fake.answers
    threaded = make_probe(proc, threaded_fake, inline_kinds=())
    try:
        assert threaded.sample() == section
    finally:
        threaded.close()
    assert all(threaded_fake.threads[p] != me for p in kinds)
    by_path = {m["mountpoint"]: m for m in section["mounts"]}
    assert by_path["/raid"]["used_bytes"] == 750_000 * 4096
    assert by_path["/"]["error"] == "OSError: [Errno 5] Input/output error: '/'"
    assert by_path["/"]["stale"] is False


def test_a_node_with_only_local_mounts_starts_no_thread(tmp_path: Path) -> None:
    fake_proc = FakeProc(tmp_path / "proc")
    local = [m for m in HPC_MOUNTS if DEFAULT_FSTYPES.get(m.fstype) in ("local", "memory", None)]
    fake_proc.write("self/mountinfo", mountinfo_text(local))
    fake_proc.write("diskstats", diskstats_text(DISKS))
    probe = make_probe(fake_proc, FakeStatvfs())
    try:
        mounts = [m["mountpoint"] for m in probe.sample()["mounts"]]
        probe.sample()
        assert mounts == ["/", "/dev/shm", "/raid"]
        # (Not threading.active_count(): daemon threads of earlier tests may still be ending.)
        assert probe.checker.threads == 0
    finally:
        probe.close()


def test_a_hung_local_mount_times_out_the_section_not_the_agent(proc: FakeProc) -> None:
    # Inline, a hung local statvfs holds up the probe itself: the runner's deadline says so.
    fake = FakeStatvfs(block=("/raid",))
    probe = make_probe(proc, fake)
    sampler = Sampler([probe])
    try:
        start = time.monotonic()
        first = sampler.run("sample", BUDGET)["storage"]
        assert time.monotonic() - start <= BUDGET + SLACK
        assert first["timed_out"] is True
        assert "did not finish within 0.30 s" in first["error"]
        start = time.monotonic()
        second = sampler.run("sample", BUDGET)["storage"]
        assert time.monotonic() - start < BUDGET  # not waited for again
        assert "still stuck" in second["error"]
        assert fake.calls["/raid"] == 1
        fake.release.set()
        wait_until(lambda: sampler.run("sample", BUDGET)["storage"].get("mounts") is not None)
        mounts = {m["mountpoint"]: m for m in sampler.run("sample", BUDGET)["storage"]["mounts"]}
        assert mounts["/raid"]["stale"] is False
        assert mounts["/raid"]["size_bytes"] == 1000 * 4096
    finally:
        fake.release.set()
        sampler.close()


EXIT_SCRIPT = textwrap.dedent(
    """
    import json, sys, threading
    from tidectl.agents.probes.storage import StorageProbe

    never = threading.Event()

    def statvfs(path):
        if path == "/lustre/scratch":
            never.wait()  # a hard-mounted Lustre whose servers are gone
        import os
        return os.statvfs_result((4096, 4096, 10, 5, 5, 10, 5, 5, 0, 255))

    probe = StorageProbe(proc_root=sys.argv[1], budget_s=0.2, statvfs=statvfs)
    stale = [m["mountpoint"] for m in probe.sample()["mounts"] if m["stale"]]
    print(json.dumps(stale))
    sys.stdout.flush()
    """
)


def test_a_process_with_a_stuck_call_still_exits_promptly(proc: FakeProc) -> None:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", EXIT_SCRIPT, proc.path],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
        cwd=str(REPO),
    )
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["/lustre/scratch"]
    assert took < 5.0


# --- the real machine ----------------------------------------------------------------------


def test_real_machine_sample_matches_schema_and_os() -> None:
    probe = StorageProbe()
    try:
        facts = probe.facts()
        section = probe.sample()
    finally:
        probe.close()
    assert [list(m) for m in facts["mounts"]] == [FACT_KEYS] * len(facts["mounts"])
    assert [list(m) for m in section["mounts"]] == [MOUNT_KEYS] * len(section["mounts"])
    for m in section["mounts"]:
        assert m["stale"] is False, m
        st = os.statvfs(m["mountpoint"])
        assert m["size_bytes"] == st.f_blocks * st.f_frsize
    names = {line.split()[2] for line in Path("/proc/diskstats").read_text().splitlines()}
    assert set(section["disks"]) <= names
    json.dumps(section, allow_nan=False)


POLL_SCRIPT = textwrap.dedent(
    """
    import json, subprocess, sys
    from tidectl.agents.probes.storage import StorageProbe

    target = sys.argv[1]
    probe = StorageProbe(include_fstypes={"tmpfs": "local"}, budget_s=2.0)
    before = [m["mountpoint"] for m in probe.sample()["mounts"]]
    unchanged = probe._table._changed()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tidectl-test", target], check=True)
    after = {m["mountpoint"]: m for m in probe.sample()["mounts"]}
    print(json.dumps({"before": before, "unchanged": unchanged, "after": after}))
    """
)


def test_real_mountinfo_change_is_seen_through_poll(tmp_path: Path) -> None:
    # A private mount namespace: the mount is invisible to the rest of the machine.
    target = tmp_path / "mnt"
    target.mkdir()
    probe_cmd = ["unshare", "-m", "--propagation", "private", "true"]
    try:
        ok = subprocess.run(probe_cmd, check=False, capture_output=True).returncode == 0
    except FileNotFoundError:
        ok = False
    if not ok:
        pytest.skip("needs unshare(1) and CAP_SYS_ADMIN for a private mount namespace")
    done = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            sys.executable,
            "-c",
            POLL_SCRIPT,
            str(target),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(REPO),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert str(target) not in result["before"]
    assert result["unchanged"] is False
    mounted = result["after"][str(target)]
    assert mounted["fstype"] == "tmpfs"
    assert mounted["size_bytes"] == 1 << 20
    assert mounted["stale"] is False


def test_one_unreadable_file_nulls_only_its_half(proc: FakeProc) -> None:
    (proc.root / "diskstats").unlink()
    probe = make_probe(proc, FakeStatvfs())
    try:
        section = probe.sample()
        assert section["disks"] is None
        assert section["field_errors"]["disks"].startswith("FileNotFoundError: ")
        assert len(section["mounts"]) == len(KEPT)
        (proc.root / "self" / "mountinfo").unlink()
        with pytest.raises(FileNotFoundError):
            make_probe(proc, FakeStatvfs()).sample()
    finally:
        probe.close()
