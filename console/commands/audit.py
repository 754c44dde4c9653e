"""``tidectl audit verify | show [PATH | -c cluster.toml]``: check and read the audit log.

``verify`` walks the whole hash chain (``docs/audit.md``) and names the first line that is not
what tidectl wrote. Exit status: 0 the log verifies (a torn last line alone is a crash's doing:
said, and still 0); 1 it was tampered with (the line, the record and why); 2 a bad command
line, or a file that cannot be read.

``show`` lists the records, one aligned line each (time, actor, front end, action, targets,
decision, outcome), or with ``--json`` each record as the log holds it, one per line. It does
not verify: run ``verify`` for that.

The log is PATH, or with ``-c`` the cluster's: ``[audit] path`` when set, else beside the store
(``<store file>.audit.jsonl``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from tidectl.console.audit import AuditQuery, AuditRecord, AuditUnavailable, read, verify
from tidectl.console.audit.query import newest, parse_since
from tidectl.console.audit.record import canonical
from tidectl.console.commands.run import UsageError

__all__ = ["add_parser", "log_path", "main", "since"]

_COLUMNS = ("TIME", "ACTOR", "FRONTEND", "ACTION", "TARGETS", "DECISION", "OUTCOME")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "audit",
        help="verify or read the tamper-evident audit log",
        description="The audit log records every request to the control plane, chained by "
        "SHA-256 (docs/audit.md). Give the log's PATH, or -c cluster.toml for the cluster's.",
    )
    actions = parser.add_subparsers(dest="audit_command", metavar="verify|show")
    actions.required = True
    check = actions.add_parser(
        "verify",
        help="check the whole hash chain",
        description="Check every record and the chain between them. Exit status: 0 it "
        "verifies (a torn last line alone is said, and is 0), 1 tampered with, 2 unreadable.",
    )
    show = actions.add_parser(
        "show",
        help="list the records",
        description="List the records, oldest first (without verifying them: use verify).",
    )
    for sub in (check, show):
        sub.add_argument("path", nargs="?", type=Path, metavar="PATH", help="the audit log")
        sub.add_argument(
            "-c", "--config", help="cluster.toml: its log ([audit] path, else beside the store)"
        )
    show.add_argument(
        "--since",
        metavar="WHEN",
        help="records from then: a UTC time (2025-11-29T05:00) or a "
        "duration back from now (90s, 15m, 2h, 7d, 1w)",
    )
    show.add_argument("--actor", metavar="NAME", help="only this actor's records")
    show.add_argument("--action", metavar="NAME", help="only this action's records")
    show.add_argument("--json", action="store_true", help="each record as stored, one per line")


def main(args: argparse.Namespace) -> int:
    path = log_path(args.path, args.config)
    try:
        if args.audit_command == "verify":
            return _verify(path)
        return _show(path, args)
    except AuditUnavailable as error:
        sys.stderr.write(f"tidectl audit {args.audit_command}: {error}\n")
        return 2


def log_path(path: Path | None, config_file: str | None) -> Path:
    """PATH, or the log of the cluster ``config_file`` describes; exactly one of them."""
    if (path is None) == (config_file is None):
        raise UsageError("give the audit log's PATH or -c cluster.toml, one of them")
    if path is not None:
        return path
    assert config_file is not None
    from tidectl.console.config.loader import load_config
    from tidectl.console.control.assemble import AssemblyError, audit_path, store_path

    config = load_config(config_file)
    try:
        return audit_path(config, store_path(config))
    except AssemblyError as error:
        raise UsageError(str(error)) from None


def since(value: str, now: datetime) -> datetime:
    """``--since``: an ISO-8601 time (UTC unless it says otherwise) or a duration before
    ``now`` (``90s``, ``15m``, ``2h``, ``7d``, ``1w``)."""
    try:
        return parse_since(value, now)
    except ValueError as error:
        raise UsageError(f"--since {value!r}: {error}") from None


def _verify(path: Path) -> int:
    result = verify(path)
    if not result.ok:
        _say(f"{path}: TAMPERED at line {result.first_bad}: {result.why}")
        _say(f"  {_verifying(result.records)} before that line")
        return 1
    if result.records == 0:
        _say(f"{path}: ok: no records yet")
    else:
        _say(
            f"{path}: ok: {_verifying(result.records)} (the last: seq {result.records}, "
            f"hash {result.last_hash})"
        )
    for record in read(path):
        if record.torn is not None:
            _say(
                f"  seq {record.seq} acknowledges {record.torn.bytes} bytes a crash left before it"
            )
    if result.torn_tail:
        _say(f"  {result.why}; the next record acknowledges it")
    return 0


def _show(path: Path, args: argparse.Namespace) -> int:
    start = since(args.since, datetime.now(UTC)) if args.since else None
    query = AuditQuery(since=start, actor=args.actor, action=args.action)
    chosen, _ = newest(read(path), query)
    if args.json:
        for record in chosen:
            _say(canonical(record.fields()).decode("utf-8"))
        return 0
    if not chosen:
        _say(f"{path}: no records" + (" match" if query.narrows else ""))
        return 0
    rows = [_COLUMNS, *(_row(record) for record in chosen)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        _say("  ".join([*cells, row[-1]]))
    return 0


def _row(record: AuditRecord) -> tuple[str, ...]:
    # The console's audit view shows the same cells (imported here: it brings Rich).
    from tidectl.console.view.audit import targets_text, when_text

    return (
        when_text(record),
        record.actor,
        record.frontend,
        record.action,
        targets_text(record.targets) or "-",
        record.decision,
        record.outcome,
    )


def _verifying(count: int) -> str:
    return "1 record verifies" if count == 1 else f"{count} records verify"


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
