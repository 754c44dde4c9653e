"""The agent's wire protocol: JSON lines, a hello record then one sample a tick.

The format is documented in ``docs/agent-protocol.md``. This module is shared by both ends:
the agent encodes with it, and the console checks the envelope of what it reads with
``decode`` before it validates the sections. Readers ignore fields they do not know, so an
older console can read a newer agent of the same schema major.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Optional, Tuple

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 0
SCHEMA = "%d.%d" % (SCHEMA_MAJOR, SCHEMA_MINOR)

#: A line longer than this is refused by readers: no agent record comes near it, and a
#: reader must not buffer an endless line from a broken or hostile node.
MAX_LINE_BYTES = 1 << 20

RECORD_TYPES = ("hello", "sample")

Record = Dict[str, Any]


class ProtocolError(ValueError):
    """A line that is not a record this console can read. The message says why."""


def parse_schema(value: object) -> Tuple[int, int]:
    """``"1.0"`` → ``(1, 0)``; anything else is a ProtocolError."""
    if not isinstance(value, str):
        raise ProtocolError("schema must be a string like %r, got %r" % (SCHEMA, value))
    major, sep, minor = value.partition(".")
    if not sep or not major.isdigit() or not minor.isdigit():
        raise ProtocolError("schema must look like %r, got %r" % (SCHEMA, value))
    return int(major), int(minor)


def _finite(value: Any) -> Any:
    """Replace NaN and infinities (not JSON) by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


#: The encoder of records, built once (``json.dumps`` with any option builds a new one every
#: call). No circular check: records are trees built fresh each tick, and the check costs a
#: dict insert and delete per object written (a sample holds hundreds).
ENCODER = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, ensure_ascii=False, check_circular=False
)


class EncodedSection(Dict[str, Any]):
    """A section that carries its own JSON text, exactly what :data:`ENCODER` writes for it.

    For a probe whose section has a fixed shape and many values (ib: eight ports of two
    dozen counters each), which it can turn into text with a template far faster than the
    generic encoder walks the dicts. The probe vouches that ``json`` matches the dict, and
    neither is changed after it is made. To everyone else it is a plain dict.
    """

    __slots__ = ("json",)

    def __init__(self, items: Dict[str, Any], json_text: str) -> None:
        super().__init__(items)
        self.json = json_text


#: Stands in for an EncodedSection while the rest of a record is encoded; then its JSON
#: string is replaced by the section's text. The random part keeps any real value from
#: ever spelling it.
_PLACEHOLDER = "\x00tidectl-section-%s-" % os.urandom(8).hex()


def encode(record: Record) -> bytes:
    """One record as one JSON line, newline included.

    A probe that computes a NaN (0/0 in a rate, a driver's garbage) must not make the line
    unreadable: non-finite floats become null.
    """
    try:
        text = _with_encoded_sections(record) or ENCODER.encode(record)
    except ValueError:
        text = ENCODER.encode(_finite(record))  # EncodedSections become plain dicts here
    return (text + "\n").encode("utf-8")


def _with_encoded_sections(record: Record) -> Optional[str]:
    """The record's text with the ``json`` of its EncodedSections spliced in; None when it
    has none (then the generic encoder writes it all). The text is the same either way.

    One pass of the generic encoder with a placeholder string for each EncodedSection, then
    one replace each: every call of the encoder has a fixed cost, so not one per section.
    """
    probes = record.get("probes")
    if not isinstance(probes, dict):
        return None
    encoded = {
        name: section for name, section in probes.items() if isinstance(section, EncodedSection)
    }
    if not encoded:
        return None
    marks = {name: _PLACEHOLDER + str(index) for index, name in enumerate(encoded)}
    stand_in = dict(record)
    stand_in["probes"] = {name: marks.get(name, section) for name, section in probes.items()}
    text = ENCODER.encode(stand_in)
    for name, section in encoded.items():
        # The encoder writes the NUL of the mark as \u0000; the mark is a whole JSON string.
        text = text.replace(ENCODER.encode(marks[name]), section.json, 1)
    return text


def decode(line: bytes) -> Record:
    """Parse and check the envelope of one line; the sections are the reader's business."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(
            "line of %d bytes is over the %d-byte limit" % (len(line), MAX_LINE_BYTES)
        )
    try:
        record = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("not JSON: %s" % exc) from None
    if not isinstance(record, dict):
        raise ProtocolError("a record must be a JSON object, got %s" % type(record).__name__)
    kind = record.get("type")
    if kind not in RECORD_TYPES:
        raise ProtocolError("unknown record type %r (expected hello or sample)" % (kind,))
    major, _minor = parse_schema(record.get("schema"))
    if major != SCHEMA_MAJOR:
        raise ProtocolError(
            "agent speaks schema %s; this console reads %d.x: deploy a matching agent"
            % (record.get("schema"), SCHEMA_MAJOR)
        )
    if kind == "sample":
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ProtocolError("sample needs a positive integer seq, got %r" % (seq,))
        if not isinstance(record.get("probes"), dict):
            raise ProtocolError("sample needs a probes object")
    elif not isinstance(record.get("facts"), dict):
        raise ProtocolError("hello needs a facts object")
    return record


def hello(
    agent_version: str,
    ts: float,
    interval_s: float,
    facts: Dict[str, Any],
    sim_seed: Any = None,
) -> Record:
    """The first record of a stream."""
    return {
        "type": "hello",
        "schema": SCHEMA,
        "agent": agent_version,
        "ts": ts,
        "interval_s": interval_s,
        "probes": list(facts),
        "sim": sim_seed,
        "facts": facts,
    }


def sample(
    *, seq: int, ts: float, mono: float, agent: Dict[str, Any], probes: Dict[str, Any]
) -> Record:
    """One tick's record."""
    return {
        "type": "sample",
        "schema": SCHEMA,
        "seq": seq,
        "ts": ts,
        "mono": mono,
        "agent": agent,
        "probes": probes,
    }
