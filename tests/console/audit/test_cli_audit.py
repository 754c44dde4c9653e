"""``tidectl audit verify | show``: the real CLI in this process, on real log files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.console.audit.helpers import append, line_of, lines, write_log
from tidectl.console.audit import AuditLog, default_path
from tidectl.console.cli import main

CONFIG = """\
[cluster]
name = "lab"
[ssh]
user = "tidectl"
known_hosts = "known_hosts"
[[nodes]]
names = "gpu[1-2]"
[store]
path = "lab.sqlite3"
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "known_hosts").write_text("")
    path = tmp_path / "cluster.toml"
    path.write_text(CONFIG)
    return path


def test_verify_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 3)
    last = json.loads(lines(path)[-1])["hash"]
    status, out, err = run(capsys, "audit", "verify", str(path))
    assert (status, err) == (0, "")
    assert out == f"{path}: ok: 3 records verify (the last: seq 3, hash {last})\n"
    empty = tmp_path / "empty.jsonl"
    AuditLog(empty).close()
    assert run(capsys, "audit", "verify", str(empty)) == (0, f"{empty}: ok: no records yet\n", "")


def test_verify_names_the_tampered_record_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.jsonl"
    original = write_log(path, 4)
    path.write_bytes(b"".join([original[0], original[1].replace(b"ana", b"eve"), *original[2:]]))
    status, out, _ = run(capsys, "audit", "verify", str(path))
    assert status == 1
    assert out.splitlines() == [
        f"{path}: TAMPERED at line 2: seq 2's hash does not match its content: the record was "
        "changed after it was written",
        "  1 record verifies before that line",
    ]


def test_verify_a_torn_tail_is_said_and_is_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 2)
    with path.open("ab") as file:
        file.write(b'{"action":"dr')
    status, out, _ = run(capsys, "audit", "verify", str(path))
    assert status == 0
    assert out.splitlines()[1] == (
        "  the last line is torn (a crash mid-write), 13 bytes; everything before it verifies; "
        "the next record acknowledges it"
    )
    with AuditLog(path) as log:
        append(log, 3)
    status, out, _ = run(capsys, "audit", "verify", str(path))
    assert status == 0
    assert out.splitlines()[1] == "  seq 3 acknowledges 13 bytes a crash left before it"


def test_verify_an_unreadable_log_or_a_bad_command_line_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    missing = tmp_path / "none.jsonl"
    status, out, err = run(capsys, "audit", "verify", str(missing))
    assert (status, out) == (2, "")
    assert err == (
        f"tidectl audit verify: {missing}: there is no audit log here; check the path; the "
        "control plane creates the log with the first change it records\n"
    )
    status, _, err = run(capsys, "audit", "verify")
    assert status == 2
    assert err == "tidectl audit: give the audit log's PATH or -c cluster.toml, one of them\n"
    status, _, err = run(capsys, "audit", "show", str(missing), "-c", str(config))
    assert (status, "one of them" in err) == (2, True)
    status, _, err = run(capsys, "audit", "show", "-c", str(tmp_path / "nope.toml"))
    assert (status, "no such file" in err) == (2, True)


def test_with_a_config_the_log_beside_the_store_is_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    path = default_path(tmp_path / "lab.sqlite3")
    assert path == tmp_path / "lab.sqlite3.audit.jsonl"
    write_log(path, 2)
    status, out, _ = run(capsys, "audit", "verify", "-c", str(config))
    assert status == 0
    assert out.startswith(f"{path}: ok: 2 records verify")


def test_with_a_config_an_audit_path_it_sets_wins(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``[audit] path`` in cluster.toml names the log (relative to the file's folder)."""
    path = tmp_path / "elsewhere.jsonl"
    write_log(path, 1)
    (tmp_path / "known_hosts").write_text("")
    config = tmp_path / "cluster.toml"
    config.write_text(
        '[cluster]\nname = "c"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "n1"\n[audit]\npath = "elsewhere.jsonl"\n'
    )
    status, out, _ = run(capsys, "audit", "verify", "-c", str(config))
    assert (status, out.startswith(f"{path}: ok: 1 record verifies")) == (0, True)


def test_show_lists_aligned_records_and_filters_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.jsonl"
    with AuditLog(path) as log:
        append(log, 1, targets=["gpu1", "gpu2", "gpu3"], outcome="started")
        append(
            log,
            2,
            actor="bo",
            frontend="console",
            action="burst",
            targets=["h100"],
            decision="denied",
            outcome="denied: bo may only view",
        )
        append(log, 3, targets=[], outcome="done: drained")
    status, out, _ = run(capsys, "audit", "show", str(path))
    assert status == 0
    rows = out.splitlines()
    assert len(rows) == 4
    assert rows[0].split() == [
        "TIME",
        "ACTOR",
        "FRONTEND",
        "ACTION",
        "TARGETS",
        "DECISION",
        "OUTCOME",
    ]
    assert rows[1].split()[1:] == ["ana", "cli", "drain", "gpu[1-3]", "allowed", "started"]
    assert rows[2].split()[1:] == [
        "bo",
        "console",
        "burst",
        "h100",
        "denied",
        "denied:",
        "bo",
        "may",
        "only",
        "view",
    ]
    assert rows[3].split()[1:] == ["ana", "cli", "drain", "-", "allowed", "done:", "drained"]
    for column in ("ACTOR", "FRONTEND", "ACTION", "TARGETS", "DECISION", "OUTCOME"):
        at = rows[0].index(column)
        assert all(row[at - 2 : at] == "  " and row[at] != " " for row in rows[1:]), column
    assert rows[1].split()[0].endswith("Z") and len(rows[1].split()[0]) == 20

    status, out, _ = run(capsys, "audit", "show", str(path), "--actor", "bo")
    assert [row.split()[1] for row in out.splitlines()[1:]] == ["bo"]
    status, out, _ = run(capsys, "audit", "show", str(path), "--action", "drain", "--since", "2h")
    assert [row.split()[1] for row in out.splitlines()[1:]] == ["ana", "ana"]
    status, out, _ = run(capsys, "audit", "show", str(path), "--since", "2999-01-01")
    assert (status, out) == (0, f"{path}: no records match\n")


def test_show_since_a_time_or_a_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.jsonl"
    fields = json.loads(write_log(tmp_path / "model.jsonl", 1)[0])
    chain, prev = [], "0" * 64
    for seq, at in enumerate(["2020-01-01T00:00:00.000000Z", "2020-06-01T12:00:00.000000Z"], 1):
        record = {**fields, "seq": seq, "at": at, "prev": prev, "request_id": f"r{seq}"}
        chain.append(line_of(record))
        prev = json.loads(chain[-1])["hash"]
    path.write_bytes(b"".join(chain))
    with AuditLog(path) as log:
        append(log, 3, request_id="now")

    def shown(*since: str) -> list[str]:
        status, out, _ = run(capsys, "audit", "show", str(path), "--json", *since)
        assert status == 0
        return [json.loads(line)["request_id"] for line in out.splitlines()]

    assert shown() == ["r1", "r2", "now"]
    assert shown("--since", "2020-03-01") == ["r2", "now"]
    assert shown("--since", "2020-06-01T12:00:00Z") == ["r2", "now"]
    assert shown("--since", "2020-06-01T13:00+01:00") == ["r2", "now"]
    assert shown("--since", "90s") == ["now"]
    assert shown("--since", "1w") == ["now"]
    status, _, err = run(capsys, "audit", "show", str(path), "--since", "yesterday")
    assert status == 2
    assert "--since 'yesterday': give a time" in err


def test_show_json_prints_the_records_as_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 3)
    with path.open("ab") as file:
        file.write(b'{"torn')
    status, out, _ = run(capsys, "audit", "show", str(path), "--json")
    assert status == 0
    assert out.encode() == b"".join(lines(path)[:3])
