"""One audit record: its fields, its canonical form, its hash, and how a line is read back.

**Canonical form.** A record is written as the UTF-8 bytes of its JSON with the keys sorted
(by Unicode code point), no spaces (``,`` and ``:`` as separators), non-ASCII characters as
themselves rather than ``\\u`` escapes, and no NaN or infinity: Python's
``json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)``. Each line of the log is exactly that form of the whole record followed by
``\\n``, so any changed byte shows: the line no longer parses, no longer re-encodes to itself,
or no longer matches its hash.

**Hash.** ``hash`` is the SHA-256 (lowercase hex) of the canonical form of the record without
its ``hash`` field; ``prev`` is the previous record's ``hash``, and :data:`GENESIS` (64 zeros)
for the first record. Fields a later tidectl adds are covered by the hash like the others.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "DECISIONS",
    "GENESIS",
    "AuditRecord",
    "NotARecord",
    "TornFragment",
    "acknowledge",
    "canonical",
    "digest",
    "parse",
    "timestamp",
]

#: ``prev`` of the first record.
GENESIS: Final = "0" * 64

DECISIONS: Final = ("allowed", "denied")

_AT_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
_AT_SHAPE: Final = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_HEX64: Final = re.compile(r"[0-9a-f]{64}")
_TEXT_FIELDS: Final = ("actor", "frontend", "action", "rule", "outcome", "request_id")


class NotARecord(ValueError):
    """A line that is not an audit record; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class TornFragment:
    """Bytes a crash left mid-write, acknowledged by the record written after them: their
    length and SHA-256 (lowercase hex)."""

    bytes: int
    sha256: str


def acknowledge(fragment: bytes) -> TornFragment:
    """What a record says of the fragment it acknowledges."""
    return TornFragment(len(fragment), hashlib.sha256(fragment).hexdigest())


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One record as the log holds it (``docs/audit.md`` describes each field)."""

    seq: int
    at: str
    actor: str
    frontend: str
    action: str
    targets: tuple[str, ...]
    params: Mapping[str, Any] = field(hash=False)
    decision: str
    rule: str
    outcome: str
    request_id: str
    prev: str
    hash: str
    torn: TornFragment | None = None

    @property
    def when(self) -> datetime:
        """``at`` as an aware UTC datetime."""
        return datetime.strptime(self.at, _AT_FORMAT).replace(tzinfo=UTC)

    def fields(self) -> dict[str, Any]:
        """The record as JSON fields, as it is written (``hash`` included)."""
        out: dict[str, Any] = {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "frontend": self.frontend,
            "action": self.action,
            "targets": list(self.targets),
            "params": dict(self.params),
            "decision": self.decision,
            "rule": self.rule,
            "outcome": self.outcome,
            "request_id": self.request_id,
            "prev": self.prev,
            "hash": self.hash,
        }
        if self.torn is not None:
            out["torn"] = {"bytes": self.torn.bytes, "sha256": self.torn.sha256}
        return out


def timestamp(when: datetime | None = None) -> str:
    """UTC, ISO-8601 with microseconds and ``Z``: ``2025-11-29T05:31:02.123456Z``."""
    moment = datetime.now(UTC) if when is None else when.astimezone(UTC)
    return moment.strftime(_AT_FORMAT)


def canonical(fields: Mapping[str, Any]) -> bytes:
    """The canonical form (see the module's docstring)."""
    return json.dumps(
        fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def digest(fields: Mapping[str, Any]) -> str:
    """The hash of a record: SHA-256 of the canonical form of every field but ``hash``."""
    content = {key: value for key, value in fields.items() if key != "hash"}
    return hashlib.sha256(canonical(content)).hexdigest()


def parse(line: bytes) -> tuple[dict[str, Any], AuditRecord]:
    """A line (without its ``\\n``) as its raw JSON fields and the record; raises
    :class:`NotARecord` with the reason when it is not one. Checks the shape only: whether the
    record is the one that was written is :func:`~tidectl.console.audit.verify.verify`'s."""
    try:
        fields = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise NotARecord("it is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise NotARecord(f"it is not JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(fields, dict):
        raise NotARecord("it is not a JSON object")
    seq = fields.get("seq")
    if type(seq) is not int or seq < 1:
        raise NotARecord("its 'seq' is not a positive integer")
    for name in _TEXT_FIELDS:
        if not isinstance(fields.get(name), str):
            raise NotARecord(f"its {name!r} is not a string")
    at = fields.get("at")
    if not isinstance(at, str) or not _AT_SHAPE.fullmatch(at):
        raise NotARecord("its 'at' is not a UTC time like 2025-11-29T05:31:02.123456Z")
    targets = fields.get("targets")
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise NotARecord("its 'targets' is not a list of names")
    if not isinstance(fields.get("params"), dict):
        raise NotARecord("its 'params' is not an object")
    if fields.get("decision") not in DECISIONS:
        raise NotARecord("its 'decision' is neither 'allowed' nor 'denied'")
    for name in ("prev", "hash"):
        value = fields.get(name)
        if not isinstance(value, str) or not _HEX64.fullmatch(value):
            raise NotARecord(f"its {name!r} is not a SHA-256 in lowercase hex")
    torn = _torn(fields.get("torn"))
    record = AuditRecord(
        seq=seq,
        at=at,
        actor=fields["actor"],
        frontend=fields["frontend"],
        action=fields["action"],
        targets=tuple(targets),
        params=fields["params"],
        decision=fields["decision"],
        rule=fields["rule"],
        outcome=fields["outcome"],
        request_id=fields["request_id"],
        prev=fields["prev"],
        hash=fields["hash"],
        torn=torn,
    )
    return fields, record


def _torn(value: object) -> TornFragment | None:
    if value is None:
        return None
    if (
        isinstance(value, dict)
        and set(value) == {"bytes", "sha256"}
        and type(value["bytes"]) is int
        and value["bytes"] >= 0
        and isinstance(value["sha256"], str)
        and _HEX64.fullmatch(value["sha256"])
    ):
        return TornFragment(value["bytes"], value["sha256"])
    raise NotARecord("its 'torn' is not {'bytes': N, 'sha256': HEX}")
