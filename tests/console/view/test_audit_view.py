"""The audit view's core: the filter's words (what the plane is asked, what is kept here), the
table newest first with denied, failed and refused rows styled apart, and the chain's line."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rich.console import Console

from tidectl.console.audit import GENESIS, AuditPage, AuditRecord, Verification
from tidectl.console.view.audit import (
    DENIED_STYLE,
    FAILED_STYLE,
    REFUSED_STYLE,
    audit_table,
    chain_line,
    page_line,
    targets_text,
)
from tidectl.console.view.audit_filter import parse_audit_filter
from tidectl.console.view.filter import FilterError

NOW = datetime(2025, 11, 29, 12, 0, tzinfo=UTC)


def record(seq: int, **fields: Any) -> AuditRecord:
    values: dict[str, Any] = {
        "seq": seq,
        "at": f"2025-11-29T05:31:{seq:02d}.000000Z",
        "actor": "ana",
        "frontend": "console",
        "action": "drain",
        "targets": ("gpu001", "gpu002"),
        "params": {},
        "decision": "allowed",
        "rule": "[roles] operator lists ana",
        "outcome": "started",
        "request_id": f"req{seq}",
        "prev": GENESIS,
        "hash": f"{seq:064x}",
    }
    values.update(fields)
    return AuditRecord(**values)


RECORDS = [
    record(1),
    record(2, outcome="done: drained"),
    record(
        3, actor="eve", action="burst", targets=("gpu",), decision="denied", outcome="denied: x"
    ),
    record(4, outcome="failed: slurmctld does not answer"),
    record(5, outcome="refused: an admin adds eve to [roles] in cluster.toml"),
]


def test_fields_are_asked_of_the_plane_and_words_kept_here() -> None:
    wanted = parse_audit_filter("actor:ana ACTION:drain since:2h gpu002 !done", NOW)
    assert (wanted.actor, wanted.action, wanted.since) == ("ana", "drain", "2h")
    query = wanted.query(NOW)
    assert query.since == NOW - timedelta(hours=2) and query.actor == "ana"
    assert [r.seq for r in RECORDS if wanted.keeps(r)] == [1, 4, 5]
    assert [r.seq for r in RECORDS if parse_audit_filter("denied", NOW).keeps(r)] == [3]
    assert [r.seq for r in RECORDS if parse_audit_filter("REQ2", NOW).keeps(r)] == [2]
    # A folded node set is found by a node in it, and by the set as shown.
    assert parse_audit_filter("gpu[001-002]", NOW).keeps(RECORDS[0])
    empty = parse_audit_filter("  ", NOW)
    assert not empty.worded and not empty.query(NOW).narrows


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("since:yesterday", "'since:yesterday': give a time"),
        ("actor:", "needs a value after the colon"),
        ("actor:ana actor:bo", "give one actor: word"),
    ],
)
def test_a_word_that_means_nothing_is_said(text: str, says: str) -> None:
    with pytest.raises(FilterError, match=says):
        parse_audit_filter(text, NOW)


def test_the_table_is_newest_first_and_styles_what_went_wrong() -> None:
    table = audit_table(RECORDS)
    seqs = [str(cell) for cell in table.columns[0].cells]
    assert seqs == ["5", "4", "3", "2", "1"]
    assert [row.style for row in table.rows] == [REFUSED_STYLE, FAILED_STYLE, DENIED_STYLE, "", ""]
    times, targets, decisions = ([str(c) for c in table.columns[i].cells] for i in (1, 5, 6))
    assert (times[0], targets[0]) == ("2025-11-29 05:31:05Z", "gpu[001-002]")
    decision = decisions[2]
    assert str(decision) == "denied [roles] operator lists ana"
    printed = Console(width=200, file=io.StringIO(), record=True)
    printed.print(table)
    text = printed.export_text()
    # Cells are text, not markup: brackets in a record show as written.
    assert "refused: an admin adds eve to [roles] in cluster.toml" in text
    assert "gpu[001-002]" in text
    assert targets_text(["gpu", "cpu-pool"]) == "cpu-pool,gpu"


def test_the_chain_line_says_how_far_it_verifies() -> None:
    ok = AuditPage(
        "/l.jsonl", tuple(RECORDS), 5, Verification(True, 5, None, None, False, "ab" * 32)
    )
    assert str(chain_line(ok)) == (
        "✔ chain: ok, 5 records verify (the last: seq 5, hash abababababababab…) · /l.jsonl"
    )
    bad = replace_chain(ok, Verification(False, 1, 2, "seq 2's hash does not match", False, "a"))
    line = chain_line(bad)
    assert str(line).startswith("✖ chain: TAMPERED at line 2: seq 2's hash does not match; 1 ")
    assert "tidectl audit verify /l.jsonl" in str(line) and line.style == "bold red"
    torn = replace_chain(ok, Verification(True, 5, None, "the last line is torn", True, "c"))
    assert "; the last line is torn · " in str(chain_line(torn))
    assert str(chain_line(AuditPage(None))) == "This control plane keeps no audit log."
    assert page_line(ok, 5, worded=False) == "5 records; newest first"
    assert page_line(AuditPage("/l", (RECORDS[0],), 40), 1, worded=True) == (
        "40 records, the newest 1 read; 1 match the filter's words; newest first"
    )


def replace_chain(page: AuditPage, chain: Verification) -> AuditPage:
    return AuditPage(page.path, page.records, page.matched, chain)
