"""AuditLog on real files: records, chain, permissions, and the ways writing fails."""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.console.audit.helpers import append, lines, write_log
from tidectl.console.audit import GENESIS, AuditLog, AuditUnavailable, default_path, read, verify
from tidectl.console.audit import log as audit_log
from tidectl.console.audit.record import canonical, digest

REPO = Path(__file__).parents[3]


def test_appended_records_are_numbered_chained_hashed_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "lab.audit.jsonl"
    with AuditLog(path) as log:
        assert [append(log, n) for n in (1, 2, 3)] == [1, 2, 3]

    assert os.stat(path).st_mode & 0o777 == 0o600
    stored = [json.loads(line) for line in lines(path)]
    assert [r["seq"] for r in stored] == [1, 2, 3]
    assert stored[0]["prev"] == GENESIS
    assert [r["prev"] for r in stored[1:]] == [r["hash"] for r in stored[:-1]]
    for line, record in zip(lines(path), stored, strict=True):
        assert line == canonical(record) + b"\n"  # sorted keys, no spaces, one per line
        assert record["hash"] == digest(record)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stored[0]["at"])
    result = verify(path)
    assert (result.ok, result.records, result.first_bad, result.why, result.torn_tail) == (
        True,
        3,
        None,
        None,
        False,
    )
    assert result.last_hash == stored[-1]["hash"]
    records = list(read(path))
    assert [(r.seq, r.targets, r.params["reason"]) for r in records] == [
        (1, ("gpu1",), "firmware 1"),
        (2, ("gpu2",), "firmware 2"),
        (3, ("gpu3",), "firmware 3"),
    ]


def test_a_second_log_on_the_same_file_continues_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 2)
    with AuditLog(path) as again:
        assert append(again, 3) == 3
    assert verify(path).records == 3


def test_append_redacts_params_and_aws_keys_in_the_outcome(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with AuditLog(path) as log:
        append(
            log,
            1,
            params={"reason": "rotate", "aws": {"secret_access_key": "wJalrXUtnFEMI/K7MDENG"}},
            outcome="failed: Credential=AKIAIOSFODNN7EXAMPLE/20251129 was refused",
        )
    text = path.read_text()
    assert "wJalrXUtnFEMI" not in text and "AKIAIOSFODNN7EXAMPLE" not in text
    (record,) = read(path)
    assert record.params == {"reason": "rotate", "aws": {"secret_access_key": "[redacted]"}}
    assert record.outcome == "failed: Credential=[redacted]/20251129 was refused"


def test_a_record_no_caller_should_make_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.jsonl"
    with AuditLog(path) as log:
        with pytest.raises(ValueError, match="'allowed' or 'denied'"):
            append(log, 1, decision="maybe")
        with pytest.raises(TypeError, match="targets"):
            append(log, 1, targets="gpu1")
    assert path.read_bytes() == b""


def test_default_path_is_beside_the_store() -> None:
    store = Path("/var/lib/tidectl/lab.sqlite3")
    assert default_path(store) == Path("/var/lib/tidectl/lab.sqlite3.audit.jsonl")


def test_missing_folders_are_created_private(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "a.jsonl"
    with AuditLog(path) as log:
        append(log, 1)
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert verify(path).records == 1


def test_a_path_under_a_regular_file_is_unavailable_with_a_sentence(tmp_path: Path) -> None:
    (tmp_path / "store.sqlite3").write_text("not a folder")
    path = tmp_path / "store.sqlite3" / "a.jsonl"
    with pytest.raises(AuditUnavailable) as refused:
        AuditLog(path)
    said = str(refused.value)
    assert said.startswith(f"{path}: cannot create the audit log's folder (")
    assert "its folder must exist and be a folder" in said


def test_a_folder_at_the_path_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.mkdir()
    with pytest.raises(AuditUnavailable, match=r"cannot open the audit log .*name a file"):
        AuditLog(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_folder_this_user_cannot_write_is_unavailable(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    try:
        with pytest.raises(AuditUnavailable, match=r"Permission denied.*writable"):
            AuditLog(folder / "a.jsonl")
    finally:
        folder.chmod(0o700)


def test_a_log_moved_aside_after_opening_refuses_to_append(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with AuditLog(path) as log:
        append(log, 1)
        path.rename(tmp_path / "old.jsonl")
        with pytest.raises(AuditUnavailable, match="removed or replaced since tidectl opened it"):
            append(log, 2)
        path.write_bytes(b"")  # a new, empty file at the path is not the log that was opened
        with pytest.raises(AuditUnavailable, match="removed or replaced"):
            append(log, 2)
    assert verify(tmp_path / "old.jsonl").records == 1


def test_a_closed_log_refuses_to_append(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    log.close()
    log.close()  # twice is harmless
    with pytest.raises(AuditUnavailable, match="was closed"):
        append(log, 1)


def test_a_stuck_lock_holder_makes_the_log_unavailable_not_hung(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.jsonl"
    monkeypatch.setattr(audit_log, "LOCK_TIMEOUT_S", 0.2)
    with AuditLog(path) as log:
        holder = os.open(path, os.O_RDONLY)  # another open file: flock tells them apart
        try:
            fcntl.flock(holder, fcntl.LOCK_EX)
            with pytest.raises(AuditUnavailable, match="held the audit log's lock"):
                append(log, 1)
        finally:
            os.close(holder)
        assert append(log, 1) == 1


def test_a_write_that_fails_part_way_leaves_nothing_behind(tmp_path: Path) -> None:
    """A file size limit (RLIMIT_FSIZE) makes the kernel write part of the record and then
    refuse (EFBIG), as a full disk does: the part is cut back off, the log still verifies, and
    the error is AuditUnavailable. In a child process, for the limit's sake."""
    path = tmp_path / "a.jsonl"
    before = write_log(path, 2)
    child = f"""
import resource, signal, sys
from pathlib import Path
from tests.console.audit.helpers import append
from tidectl.console.audit import AuditLog, AuditUnavailable
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
log = AuditLog(Path({str(path)!r}))
size = Path({str(path)!r}).stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, size + 100))
try:
    append(log, 3)
except AuditUnavailable as error:
    print(error)
    sys.exit(0)
sys.exit("appended past the limit")
"""
    done = subprocess.run(
        [sys.executable, "-c", child],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "cannot write the audit log (File too large)" in done.stdout
    assert lines(path) == before
    result = verify(path)
    assert (result.ok, result.records, result.torn_tail) == (True, 2, False)
