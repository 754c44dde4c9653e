"""The tamper-evident audit log: who asked the control plane for what, and what it decided.

Append-only JSON lines, one per request, each fsynced before the change it records goes
ahead, and chained by SHA-256 so that an edited, removed, inserted or reordered record shows
when the log is verified. ``docs/audit.md`` has the format; ``tidectl audit verify | show``
reads it.
"""

from tidectl.console.audit.errors import AuditUnavailable
from tidectl.console.audit.log import AuditLog, default_path
from tidectl.console.audit.query import AuditQuery, parse_since
from tidectl.console.audit.reader import AuditPage, AuditReader
from tidectl.console.audit.record import GENESIS, AuditRecord, TornFragment
from tidectl.console.audit.redact import REDACTED, redact
from tidectl.console.audit.verify import Verification, read, verify

__all__ = [
    "GENESIS",
    "REDACTED",
    "AuditLog",
    "AuditPage",
    "AuditQuery",
    "AuditReader",
    "AuditRecord",
    "AuditUnavailable",
    "TornFragment",
    "Verification",
    "default_path",
    "parse_since",
    "read",
    "redact",
    "verify",
]
