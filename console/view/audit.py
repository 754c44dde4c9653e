"""How the audit log reads in a front end: a record's cells, the table of them, and a line on
how far the hash chain verifies.

``tidectl audit show`` prints the same time and targets cells; the console's audit view shows
the table, newest first. A denied request, and one that failed or was refused after it was
allowed, are styled apart — and say so in words too (``denied``, ``failed: …``), so that no
colour is the only signal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.table import Table
from rich.text import Text

from tidectl.console.audit import AuditPage, AuditRecord, Verification
from tidectl.console.nodesets import NodeSetError, fold

__all__ = [
    "audit_table",
    "chain_line",
    "no_plane_line",
    "page_line",
    "record_style",
    "targets_text",
    "when_text",
]

#: Rows the console would have someone look at: denied, failed, refused.
DENIED_STYLE = "bold red"
FAILED_STYLE = "red"
REFUSED_STYLE = "yellow"
_DECISION_STYLE = {"allowed": "green", "denied": DENIED_STYLE}
#: How much of a hash a line shows: enough to compare with one noted elsewhere.
_HASH_SHOWN = 16


def when_text(record: AuditRecord) -> str:
    """When it was written, to the second, UTC: ``2025-11-29T05:31:02Z``."""
    return record.at[:19] + "Z"


def targets_text(names: Iterable[str]) -> str:
    """Node names folded (``gpu[001-004]``); pool names, or names that do not fold, listed."""
    listed = list(names)
    try:
        return fold(listed)
    except NodeSetError:
        return ",".join(listed)


def record_style(record: AuditRecord) -> str:
    """The row's style: denied, failed, refused, or none."""
    if record.decision == "denied":
        return DENIED_STYLE
    if record.outcome.startswith("failed:"):
        return FAILED_STYLE
    if record.outcome.startswith("refused:"):
        return REFUSED_STYLE
    return ""


def audit_table(records: Sequence[AuditRecord]) -> Table:
    """``records`` (oldest first, as the plane returns them) as a table, newest first."""
    table = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    table.add_column("SEQ", justify="right", no_wrap=True)
    table.add_column("TIME (UTC)", no_wrap=True)
    table.add_column("ACTOR", no_wrap=True)
    table.add_column("VIA", no_wrap=True)
    table.add_column("ACTION", no_wrap=True)
    table.add_column("TARGETS", max_width=32, overflow="fold")
    table.add_column("DECISION", max_width=40, overflow="fold")
    table.add_column("OUTCOME", ratio=1, overflow="fold")
    for record in reversed(records):
        decision = Text(record.decision, style=_DECISION_STYLE.get(record.decision, ""))
        decision.append(f" {record.rule}", style="dim")
        table.add_row(
            # Text, not str: a str cell is Rich markup, and "[roles]" or "gpu[001-004]" in a
            # record would be taken for tags.
            *(
                Text(cell)
                for cell in (
                    str(record.seq),
                    when_text(record).replace("T", " "),
                    record.actor,
                    record.frontend,
                    record.action,
                    targets_text(record.targets) or "-",
                )
            ),
            decision,
            Text(record.outcome),
            style=record_style(record),
        )
    return table


def chain_line(page: AuditPage) -> Text:
    """How far the hash chain verifies, in one line (symbol and words, then colour)."""
    if page.path is None:
        return Text("This control plane keeps no audit log.", style="yellow")
    chain = page.chain
    if chain is None:
        return Text(f"chain: not verified · {page.path}", style="yellow")
    if not chain.ok:
        return Text(
            f"✖ chain: TAMPERED at line {chain.first_bad}: {chain.why}; {_verifying(chain)} "
            f"before it. Run tidectl audit verify {page.path}",
            style="bold red",
        )
    if chain.records == 0:
        said = "✔ chain: ok, no records yet"
    else:
        last = (chain.last_hash or "")[:_HASH_SHOWN]
        said = f"✔ chain: ok, {_verifying(chain)} (the last: seq {chain.records}, hash {last}…)"
    if chain.torn_tail and chain.why:
        said += f"; {chain.why}"
    return Text(f"{said} · {page.path}", style="green")


def no_plane_line(problem: str | None) -> str:
    """Why the audit view has nothing to show: the log is read through a control plane."""
    if problem:
        return f"The audit log is read through the control plane, which is off here: {problem}."
    return "The control plane is still starting; the audit log shows once it is up."


def page_line(page: AuditPage, shown: int, *, worded: bool) -> str:
    """What the table holds of the log: how many matched, how many were read, and, when the
    filter has words, how many of those match them."""
    if page.path is None:
        return ""
    said = "1 record" if page.matched == 1 else f"{page.matched} records"
    if page.matched > len(page.records):
        said += f", the newest {len(page.records)} read"
    if worded:
        said += f"; {shown} match the filter's words"
    return said + "; newest first"


def _verifying(chain: Verification) -> str:
    return "1 record verifies" if chain.records == 1 else f"{chain.records} records verify"
