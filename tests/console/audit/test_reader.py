"""``AuditReader``: the newest records a query wants, and the chain verified once per state of the
file — a view that asks every few seconds while nothing changes does not hash the log again,
and sees an append (or an edit) at its next read. ``newest`` and ``AuditQuery`` choose."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.console.audit.helpers import append, lines, write_log
from tidectl.console.audit import (
    AuditLog,
    AuditQuery,
    AuditReader,
    AuditUnavailable,
    Verification,
    read,
    verify,
)
from tidectl.console.audit import reader as reader_module
from tidectl.console.audit.query import newest, parse_since


def test_the_chain_is_verified_once_per_state_of_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 3)
    verified: list[Path] = []
    real = verify

    def counting(at: Path) -> Verification:
        verified.append(at)
        return real(at)

    monkeypatch.setattr(reader_module, "verify", counting)
    reader = AuditReader(path)
    first = reader.page(AuditQuery(), 10)
    assert [r.seq for r in first.records] == [1, 2, 3] and first.chain is not None
    assert reader.page(AuditQuery(), 10) is first
    bo = reader.page(AuditQuery(actor="bo"), 10)  # another query: records chosen again
    assert bo.records == () and bo.chain == first.chain
    assert len(verified) == 1
    with AuditLog(path) as log:
        append(log, 4, actor="bo")
    again = reader.page(AuditQuery(actor="bo"), 10)
    assert [r.seq for r in again.records] == [4]
    assert again.chain is not None and again.chain.records == 4 and len(verified) == 2


def test_an_edit_shows_at_the_next_read_and_a_missing_log_is_said(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    original = write_log(path, 2)
    reader = AuditReader(path)
    assert reader.page(AuditQuery(), 10).chain.ok  # type: ignore[union-attr]
    path.write_bytes(original[0] + original[1].replace(b"firmware 2", b"firmware 22"))
    chain = reader.page(AuditQuery(), 10).chain
    assert chain is not None and (chain.ok, chain.first_bad) == (False, 2)
    path.unlink()
    with pytest.raises(AuditUnavailable, match="there is no audit log here"):
        reader.page(AuditQuery(), 10)


def test_newest_keeps_the_last_matches_oldest_first_and_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with AuditLog(path) as log:
        for number in range(1, 7):
            append(log, number, actor="ana" if number % 2 else "bo")
    records = list(read(path))
    chosen, matched = newest(records, AuditQuery(actor="ana"), 2)
    assert ([r.seq for r in chosen], matched) == ([3, 5], 3)
    assert newest(records, AuditQuery(action="burst"))[1] == 0
    assert len(newest(records, AuditQuery(), 0)[0]) == 0
    first = records[0].when
    assert newest(records, AuditQuery(since=first.replace(tzinfo=None)))[1] == 6
    assert newest(records, AuditQuery(since=first + timedelta(days=1)))[1] == 0
    with pytest.raises(ValueError, match="limit must be 0 or more"):
        newest(records, AuditQuery(), -1)
    assert len(lines(path)) == 6


def test_since_is_a_time_or_a_duration_back_from_now() -> None:
    now = datetime.fromisoformat("2025-11-29T12:00:00+00:00")
    assert parse_since("90s", now) == now - timedelta(seconds=90)
    assert parse_since("2h", now) == now - timedelta(hours=2)
    assert parse_since("2025-11-29T05:00", now).isoformat() == "2025-11-29T05:00:00+00:00"
    with pytest.raises(ValueError, match="give a time"):
        parse_since("yesterday", now)
