"""Writing audit logs for the tests: through AuditLog, and by hand (to forge or tear)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tidectl.console.audit import AuditLog
from tidectl.console.audit.record import canonical, digest


def append(log: AuditLog, number: int, **overrides: Any) -> int:
    """One ordinary record, its params naming ``number`` (so each line differs)."""
    fields: dict[str, Any] = {
        "actor": "ana",
        "frontend": "cli",
        "action": "drain",
        "targets": [f"gpu{number}"],
        "params": {"reason": f"firmware {number}", "nodes": f"gpu{number}"},
        "decision": "allowed",
        "rule": "role:operator",
        "outcome": "done: drained",
        "request_id": f"req{number:04d}",
    }
    fields.update(overrides)
    return log.append(**fields)


def write_log(path: Path, count: int) -> list[bytes]:
    """A log of ``count`` records; its lines (each with its newline)."""
    with AuditLog(path) as log:
        for number in range(1, count + 1):
            append(log, number)
    return lines(path)


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def line_of(fields: dict[str, Any]) -> bytes:
    """A record line as AuditLog writes it, with its hash computed from ``fields``."""
    content = {key: value for key, value in fields.items() if key != "hash"}
    return canonical({**content, "hash": digest(content)}) + b"\n"
