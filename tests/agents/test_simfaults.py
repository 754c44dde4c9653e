"""The sim node's fault model: the parser, the fault file's rules, the random stream."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tidectl.agents.probes.simfaults import (
    KINDS,
    Clear,
    Fault,
    FaultError,
    FaultFile,
    RandomFault,
    RandomFaults,
    parse_line,
    parse_text,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "agent-sim.md"


def _doc_block(info: str) -> list[str]:
    """The lines of the fenced block with this info string in docs/agent-sim.md."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^```{re.escape(info)}\n(.*?)^```", text, re.S | re.M)
    assert match, f"docs/agent-sim.md has no ```{info} block"
    return match.group(1).splitlines()


# -- parsing ---------------------------------------------------------------------------------


def test_every_valid_line_in_the_doc_parses() -> None:
    lines = _doc_block("faults")
    rules = [parse_line(line) for line in lines]
    faults = [r for r in rules if isinstance(r, Fault)]
    clears = [r for r in rules if isinstance(r, Clear)]
    # Every kind is shown, and a clear without filters too.
    assert {f.kind for f in faults} == set(KINDS)
    assert Clear() in clears
    assert Clear(kind="xid") in clears
    assert sum(1 for r in rules if r is None) == 1  # the comment line


def test_every_invalid_line_in_the_doc_is_an_error() -> None:
    lines = [line for line in _doc_block("faults-invalid") if line.strip()]
    assert len(lines) >= 15
    for line in lines:
        with pytest.raises(FaultError):
            parse_line(line)
    rules, errors = parse_text("\n".join(lines), "f")
    assert rules == []
    assert len(errors) == len(lines)
    assert errors[0].startswith("f:1: unknown fault kind 'xidd'")


def test_the_brief_s_examples_parse_to_the_faults_they_say() -> None:
    assert parse_line("xid gpu=3 code=79") == Fault("xid", gpu=3, code=79)
    assert parse_line("xid gpu=3") == Fault("xid", gpu=3, code=79)
    assert parse_line("ecc_dbe gpu=1 count=1") == Fault("ecc_dbe", gpu=1, count=1)
    assert parse_line("ecc_sbe gpu=2 rate=50") == Fault("ecc_sbe", gpu=2, rate=50.0)
    assert parse_line("gpu_lost gpu=5") == Fault("gpu_lost", gpu=5)
    assert parse_line("hot gpu=0") == Fault("hot", gpu=0, temp=92.0)
    assert parse_line("ib_down port=mlx5_2/1") == Fault("ib_down", port="mlx5_2/1")
    assert parse_line("ib_down port=mlx5_2/1 phys=polling").phys == "polling"  # type: ignore[union-attr]
    assert parse_line("symbol_errors port=mlx5_0/1 rate=20") == Fault(
        "symbol_errors", port="mlx5_0/1", rate=20.0
    )
    assert parse_line("disk_full mount=/scratch") == Fault("disk_full", mount="/scratch", pct=99.5)
    assert parse_line("stale_mount mount=/home") == Fault("stale_mount", mount="/home")
    assert parse_line("clear") == Clear()
    assert parse_line("clear kind=xid") == Clear(kind="xid")
    assert parse_line("clear gpu=2 kind=hot") == Clear(kind="hot", gpu=2)


def test_comments_blank_lines_spacing_and_order() -> None:
    assert parse_line("") is None
    assert parse_line("   # only a comment") is None
    assert parse_line("\txid   code=13  gpu=7 # trailing") == Fault("xid", gpu=7, code=13)


def test_canonical_form_ignores_spelling_but_not_meaning() -> None:
    a = parse_line("xid gpu=3")
    b = parse_line("xid  code=79 gpu=3  # again")
    c = parse_line("xid gpu=3 code=13")
    assert a is not None and b is not None and c is not None
    assert a.canonical() == b.canonical() == "xid gpu=3 code=79"
    assert c.canonical() != a.canonical()
    assert Fault("ecc_sbe", gpu=2, rate=50.0).canonical() == "ecc_sbe gpu=2 rate=50"
    assert Clear(kind="hot", gpu=1).canonical() == "clear kind=hot gpu=1"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("melt gpu=1", "unknown fault kind 'melt'"),
        ("xid", "xid needs gpu="),
        ("xid gpu=1 port=mlx5_0/1", "xid takes gpu, code, node, not 'port'"),
        ("xid gpu=1 gpu=2", "gpu= given twice"),
        ("xid gpu", "expected key=value, got 'gpu'"),
        ("ecc_sbe gpu=1 rate=inf", "rate= takes a finite number"),
        ("ib_down port=mlx5_0/0", "port must look like mlx5_0/1"),
        ("disk_full mount=/x pct=0", "pct must be in (0, 100]"),
    ],
)
def test_errors_say_what_is_wrong(line: str, message: str) -> None:
    with pytest.raises(FaultError) as info:
        parse_line(line)
    assert message in str(info.value)


def test_in_process_faults_are_validated_too() -> None:
    with pytest.raises(FaultError):
        Fault("xid")
    with pytest.raises(FaultError):
        Fault("hot", gpu=-1)
    with pytest.raises(FaultError):
        Fault("ib_down", port="mlx5_0")
    with pytest.raises(FaultError):
        Clear(kind="nope")
    assert Fault("xid", gpu=1).one_shot and Fault("ecc_dbe", gpu=1).one_shot
    assert not Fault("hot", gpu=1).one_shot


def test_clear_matching() -> None:
    hot1 = Fault("hot", gpu=1)
    assert Clear().matches(hot1)
    assert Clear(kind="hot").matches(hot1)
    assert Clear(gpu=1).matches(hot1)
    assert not Clear(gpu=2).matches(hot1)
    assert not Clear(kind="xid").matches(hot1)
    assert not Clear(port="mlx5_0/1").matches(hot1)


# -- the fault file --------------------------------------------------------------------------


def _write(path: Path, text: str) -> None:
    # A fresh mtime for every write, even within one clock tick of the filesystem.
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    st = path.stat()
    if st.st_mtime_ns <= before:
        os.utime(path, ns=(st.st_atime_ns, before + 1_000_000))


def _keys(file: FaultFile, text: str, path: Path) -> list[str]:
    _write(path, text)
    change = file.poll()
    assert change is not None
    return [fault.canonical() for _, _, fault in change.started]


def test_a_missing_file_holds_no_faults_and_is_not_an_error(tmp_path: Path) -> None:
    file = FaultFile(str(tmp_path / "none"))
    change = file.poll()
    assert change is not None and change == ([], [], [], [])
    assert file.poll() is None  # still missing: nothing changed
    assert file.reads == 0


def test_lines_take_effect_when_they_appear(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    file = FaultFile(str(path))
    assert _keys(file, "xid gpu=3\nhot gpu=0\n", path) == ["xid gpu=3 code=79", "hot gpu=0 temp=92"]
    # Unchanged lines, respelled or not, do not start again; only the new line does.
    assert _keys(file, "xid  code=79 gpu=3\nhot gpu=0 # still\nxid gpu=4\n", path) == [
        "xid gpu=4 code=79"
    ]
    # A second copy of a line is a second fault.
    assert _keys(file, "xid gpu=3\nhot gpu=0\nxid gpu=4\nxid gpu=3\n", path) == [
        "xid gpu=3 code=79"
    ]
    # Removing a line stops it (for a condition) ...
    _write(path, "xid gpu=3\n")
    change = file.poll()
    assert change is not None
    assert change.started == []
    assert sorted(change.stopped) == [
        "hot gpu=0 temp=92 #1",
        "xid gpu=3 code=79 #2",
        "xid gpu=4 code=79 #1",
    ]
    # ... and adding it back later starts it again.
    assert _keys(file, "xid gpu=3\nhot gpu=0\nxid gpu=4\n", path) == [
        "hot gpu=0 temp=92",
        "xid gpu=4 code=79",
    ]


def test_clear_lines_cancel_the_lines_above_them(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    file = FaultFile(str(path))
    _keys(file, "hot gpu=0\nhot gpu=1\nstale_mount mount=/home\n", path)
    _write(path, "hot gpu=0\nhot gpu=1\nstale_mount mount=/home\nclear kind=hot gpu=1\nhot gpu=2\n")
    change = file.poll()
    assert change is not None
    assert change.stopped == ["hot gpu=1 temp=92 #1"]
    assert [f.canonical() for _, _, f in change.started] == ["hot gpu=2 temp=92"]
    assert change.clears == [Clear(kind="hot", gpu=1)]
    # The same clear line, still there at the next read, is not new.
    _write(
        path, "hot gpu=0\nhot gpu=1\nstale_mount mount=/home\nclear kind=hot gpu=1\nhot gpu=2\n#\n"
    )
    change = file.poll()
    assert change is not None and change.clears == [] and change.stopped == []
    # "echo clear >> FILE" ends everything above.
    _write(
        path,
        "hot gpu=0\nhot gpu=1\nstale_mount mount=/home\nclear kind=hot gpu=1\nhot gpu=2\nclear\n",
    )
    change = file.poll()
    assert change is not None
    assert sorted(change.stopped) == [
        "hot gpu=0 temp=92 #1",
        "hot gpu=2 temp=92 #1",
        "stale_mount mount=/home #1",
    ]
    assert change.clears == [Clear()]


def test_node_filter(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    path.write_text("xid gpu=1 node=gpu017\nxid gpu=2 node=gpu018\nxid gpu=3\n", encoding="utf-8")
    change = FaultFile(str(path), hostname="gpu017").poll()
    assert change is not None
    assert [(lineno, f.gpu) for _, lineno, f in change.started] == [(1, 1), (3, 3)]


def test_malformed_lines_are_reported_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "faults.txt"
    path.write_text("xid gpu=1\nxid gpu=one\n\nfrobnicate\nhot gpu=2\n", encoding="utf-8")
    change = FaultFile(str(path)).poll()
    assert change is not None
    assert [f.canonical() for _, _, f in change.started] == [
        "xid gpu=1 code=79",
        "hot gpu=2 temp=92",
    ]
    assert change.errors == [
        "faults.txt:2: gpu= takes a whole number, not 'one'",
        "faults.txt:4: unknown fault kind 'frobnicate' (known: disk_full, ecc_dbe, ecc_sbe, "
        "gpu_lost, hot, ib_down, stale_mount, symbol_errors, xid, clear)",
    ]


def test_the_file_is_read_again_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    path.write_text("hot gpu=1\n", encoding="utf-8")
    file = FaultFile(str(path))
    assert file.poll() is not None
    assert file.reads == 1
    for _ in range(5):
        assert file.poll() is None
    assert file.reads == 1
    # Same size, same mtime: not read (this is the rule, and it is what keeps polls cheap).
    st = path.stat()
    path.write_text("hot gpu=2\n", encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file.poll() is None
    assert file.reads == 1
    # A new mtime: read, and the new line takes effect.
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    change = file.poll()
    assert change is not None and file.reads == 2
    assert [f.gpu for _, _, f in change.started] == [2]
    # A new size with the same mtime: read too.
    path.write_text("hot gpu=2\nhot gpu=3\n", encoding="utf-8")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    change = file.poll()
    assert change is not None and file.reads == 3
    assert [f.gpu for _, _, f in change.started] == [3]


def test_an_unreadable_file_keeps_its_faults_and_says_why(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    path.write_text("hot gpu=1\n", encoding="utf-8")

    calls = {"n": 0}

    def stat(p: str) -> os.stat_result:
        calls["n"] += 1
        if calls["n"] == 2:
            raise PermissionError(13, "Permission denied", p)
        return os.stat(p)

    file = FaultFile(str(path), stat=stat)
    assert file.poll() is not None
    change = file.poll()
    assert change is not None
    assert change.started == [] and change.stopped == []
    assert change.errors == [f"{path}: PermissionError: Permission denied"]
    # Readable again, unchanged: the fault it held was never stopped, so nothing restarts.
    change = file.poll()
    assert change is not None and change.started == [] and change.stopped == []
    assert change.errors == []


# -- random faults ---------------------------------------------------------------------------


def test_random_faults_are_seeded_and_aim_at_real_parts() -> None:
    ports = ["mlx5_0/1", "mlx5_1/1", "mlx5_2/1", "mlx5_3/1"]
    mounts = ["/", "/scratch", "/home", "/lustre"]

    def draw(seed: int) -> list[RandomFault | None]:
        stream = RandomFaults(seed, 6.0, 8, ports, mounts)
        return [stream.pop() for _ in range(300)]

    a, b, c = draw(5), draw(5), draw(6)
    assert a == b
    assert a != c
    times = [f.at_s for f in a if f is not None]
    assert times == sorted(times)
    mean_gap = times[-1] / len(times)
    assert 400 < mean_gap < 800  # 6 per hour: one every 600 s on average
    kinds = {f.fault.kind for f in a if f is not None}
    assert kinds == set(KINDS)
    for item in a:
        assert item is not None
        fault = item.fault
        assert fault.gpu is None or 0 <= fault.gpu < 8
        assert fault.port is None or fault.port in ports
        assert fault.mount is None or fault.mount in mounts
        assert (item.duration_s is None) == fault.one_shot
        if item.duration_s is not None:
            assert 120 <= item.duration_s <= 900


def test_no_random_faults_at_rate_zero() -> None:
    stream = RandomFaults(1, 0.0, 8, ["mlx5_0/1"], ["/"])
    assert stream.peek() is None and stream.pop() is None
