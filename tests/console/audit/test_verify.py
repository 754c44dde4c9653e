"""verify() on real files: every kind of tampering is named at its line, and a crash's torn
write is told apart from it (and acknowledged by the next record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.console.audit.helpers import append, line_of, lines, write_log
from tidectl.console.audit import AuditLog, AuditUnavailable, read, verify
from tidectl.console.audit.record import GENESIS


def rewrite(path: Path, new_lines: list[bytes]) -> None:
    path.write_bytes(b"".join(new_lines))


def test_an_empty_log_verifies(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    AuditLog(path).close()
    result = verify(path)
    assert (result.ok, result.records, result.torn_tail, result.last_hash) == (True, 0, False, None)


def test_a_missing_log_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(AuditUnavailable, match="there is no audit log here"):
        verify(tmp_path / "none.jsonl")
    with pytest.raises(AuditUnavailable, match="there is no audit log here"):
        read(tmp_path / "none.jsonl")


def test_one_changed_byte_in_params_is_named_at_its_record(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    original = write_log(path, 5)
    changed = original[2].replace(b"firmware 3", b"firmware 4")
    assert changed != original[2]
    rewrite(path, [*original[:2], changed, *original[3:]])

    result = verify(path)
    assert (result.ok, result.records, result.first_bad) == (False, 2, 3)
    assert result.why == (
        "seq 3's hash does not match its content: the record was changed after it was written"
    )


def test_every_changed_byte_is_caught_at_the_line_holding_it(tmp_path: Path) -> None:
    """All but the last byte (the final newline: without it the last line reads as torn)."""
    path = tmp_path / "a.jsonl"
    original = b"".join(write_log(path, 3))
    starts = [0]
    for index, byte in enumerate(original):
        if byte == ord("\n"):
            starts.append(index + 1)
    for offset in range(len(original) - 1):
        tampered = bytearray(original)
        tampered[offset] ^= 0x01
        path.write_bytes(bytes(tampered))
        result = verify(path)
        line = max(n for n, start in enumerate(starts, 1) if start <= offset)
        assert (result.ok, result.first_bad) == (False, line), (offset, result)


def test_a_removed_middle_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    original = write_log(path, 5)
    rewrite(path, [*original[:2], *original[3:]])

    result = verify(path)
    assert (result.ok, result.records, result.first_bad) == (False, 2, 3)
    assert result.why == "seq 4 follows seq 2: records are missing, repeated or out of order"


def test_a_removed_first_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    rewrite(path, write_log(path, 3)[1:])
    result = verify(path)
    assert (result.ok, result.first_bad) == (False, 1)
    assert result.why == "the log starts at seq 2: records before it are missing"


def test_two_swapped_records_are_named(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    original = write_log(path, 5)
    rewrite(path, [original[0], original[2], original[1], *original[3:]])

    result = verify(path)
    assert (result.ok, result.records, result.first_bad) == (False, 1, 2)
    assert result.why == "seq 3 follows seq 1: records are missing, repeated or out of order"


def test_a_forged_record_with_a_recomputed_hash_but_wrong_prev_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    original = write_log(path, 4)
    # The forger renumbers what follows and rehashes each record, but cannot know what prev
    # to give the record they insert without rewriting the chain from there on.
    forged = json.loads(original[2])
    forged.update(actor="mallory", prev="f" * 64)
    renumbered = []
    for line in original[2:]:
        record = json.loads(line)
        record["seq"] += 1
        renumbered.append(line_of(record))
    rewrite(path, [*original[:2], line_of(forged), *renumbered])

    result = verify(path)
    assert (result.ok, result.records, result.first_bad) == (False, 2, 3)
    assert result.why == (
        "seq 3's prev is not the hash of seq 2 before it: a record was removed, inserted or "
        "reordered"
    )


def test_a_first_record_whose_prev_is_not_genesis_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    first = json.loads(write_log(path, 1)[0])
    first["prev"] = "a" * 64
    rewrite(path, [line_of(first)])
    result = verify(path)
    assert (result.ok, result.first_bad) == (False, 1)
    assert "not the genesis value" in (result.why or "")


def test_a_line_that_is_not_a_record_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    original = write_log(path, 3)
    rewrite(path, [original[0], b"hello\n", *original[1:]])

    result = verify(path)
    assert (result.ok, result.records, result.first_bad) == (False, 1, 2)
    assert result.why is not None
    assert result.why.startswith("not an audit record (it is not JSON")
    assert "seq 2 after it does not acknowledge it as a torn write" in result.why


def test_a_non_record_last_line_with_its_newline_is_not_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    rewrite(path, [*write_log(path, 2), b'{"seq": 3}\n'])
    result = verify(path)
    assert (result.ok, result.first_bad, result.torn_tail) == (False, 3, False)
    assert result.why == (
        "not an audit record (its 'actor' is not a string), and no record after it "
        "acknowledges it as a torn write"
    )


def test_a_record_edited_out_of_canonical_form_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    original = write_log(path, 3)
    spaced = json.dumps(json.loads(original[1]), sort_keys=True).encode() + b"\n"
    rewrite(path, [original[0], spaced, original[2]])
    result = verify(path)
    assert (result.ok, result.first_bad) == (False, 2)
    assert result.why == (
        "seq 2 is not in the canonical form tidectl writes (its hash matches): the line was edited"
    )


def torn_half(path: Path) -> bytes:
    """Half of a real record line, as a crash mid-write leaves it."""
    sibling = path.with_name("whole.jsonl")
    whole = write_log(sibling, len(lines(path)) + 1)[-1]
    return whole[: len(whole) // 2]


def test_a_torn_last_line_verifies_up_to_it_and_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 3)
    fragment = torn_half(path)
    with path.open("ab") as file:
        file.write(fragment)

    result = verify(path)
    assert (result.ok, result.records, result.first_bad, result.torn_tail) == (True, 3, None, True)
    assert result.why == (
        f"the last line is torn (a crash mid-write), {len(fragment)} bytes; everything before "
        "it verifies"
    )
    assert [r.seq for r in read(path)] == [1, 2, 3]


def test_appending_after_a_torn_tail_acknowledges_it_and_the_whole_log_verifies(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 3)
    fragment = torn_half(path)
    with path.open("ab") as file:
        file.write(fragment)
    with AuditLog(path) as log:
        assert append(log, 4) == 4
        assert append(log, 5) == 5

    assert lines(path)[3] == fragment + b"\n"  # terminated, kept as it was
    result = verify(path)
    assert (result.ok, result.records, result.torn_tail, result.why) == (True, 5, False, None)
    records = list(read(path))
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[3].torn is not None
    assert records[3].torn.bytes == len(fragment)
    assert records[3].prev == records[2].hash  # the chain goes over the fragment
    assert records[4].torn is None


def test_an_acknowledged_fragment_that_was_changed_or_removed_is_named(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    write_log(path, 2)
    with path.open("ab") as file:
        file.write(b'{"action":"dr')
    with AuditLog(path) as log:
        append(log, 3)
    acknowledged = lines(path)

    rewrite(path, [*acknowledged[:2], b'{"action":"xx\n', acknowledged[3]])
    result = verify(path)
    assert (result.ok, result.first_bad) == (False, 3)
    assert "not the torn fragment that seq 3 acknowledges (13 bytes" in (result.why or "")

    rewrite(path, [*acknowledged[:2], acknowledged[3]])
    result = verify(path)
    assert (result.ok, result.first_bad) == (False, 3)
    assert result.why == (
        "seq 3 acknowledges a torn fragment of 13 bytes before it, and there is none: the "
        "fragment was removed"
    )


def test_a_crash_while_acknowledging_a_fragment_is_acknowledged_in_turn(tmp_path: Path) -> None:
    """Two crashes in a row: a fragment, the newline that ended it, and a second fragment."""
    path = tmp_path / "a.jsonl"
    write_log(path, 2)
    torn = b'{"action":"dr\n{"action":"drain","ac'
    with path.open("ab") as file:
        file.write(torn)
    result = verify(path)
    assert (result.ok, result.torn_tail, result.records) == (True, True, 2)
    assert result.why == (
        f"the last 2 lines (from line 3) are torn (crashes mid-write), {len(torn)} bytes; "
        "everything before them verifies"
    )
    with AuditLog(path) as log:
        append(log, 3)
    result = verify(path)
    assert (result.ok, result.records, result.torn_tail) == (True, 3, False)
    assert [r.torn.bytes if r.torn else None for r in read(path)] == [None, None, len(torn)]


def test_a_torn_first_record_is_acknowledged_by_the_first_whole_one(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"action":"drain","actor":"a')
    assert verify(path).torn_tail
    with AuditLog(path) as log:
        assert append(log, 1) == 1
    (record,) = read(path)
    assert (record.seq, record.prev, record.torn is not None) == (1, GENESIS, True)
    assert verify(path).ok


def test_a_whole_last_record_missing_only_its_newline_counts_and_is_continued(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"".join(write_log(path, 2)).removesuffix(b"\n"))
    result = verify(path)
    assert (result.ok, result.records, result.torn_tail) == (True, 2, False)
    with AuditLog(path) as log:
        assert append(log, 3) == 3
    assert [r.torn for r in read(path)] == [None, None, None]
    assert verify(path).records == 3


def test_a_log_whose_end_holds_no_record_is_refused_not_continued(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    record = write_log(path, 1)[0]
    path.write_bytes(record + (b"y" * 1023 + b"\n") * 4200)
    with pytest.raises(AuditUnavailable, match="more than 4 MiB at its end are not audit records"):
        AuditLog(path)
