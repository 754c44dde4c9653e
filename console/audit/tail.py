"""Where the chain goes on: the last record of a log, and the bytes after it, read backwards.

An append needs the last record's ``seq`` and ``hash`` (read under the lock, so two writers
never continue from the same record) and whatever a crash left after it, which the new record
acknowledges. Only the end of the file is read: an append costs the same on a log of ten
records and of ten million.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from tidectl.console.audit.errors import AuditUnavailable
from tidectl.console.audit.record import GENESIS, NotARecord, parse

__all__ = ["MAX_FRAGMENT", "Tail", "read_tail"]

#: How far back from the end a record must be found. A crash leaves less than one record's
#: worth; more than this after the last record is not a crash's doing.
MAX_FRAGMENT: Final = 4 * 1024 * 1024
_CHUNK: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class Tail:
    """The last record's ``seq`` and ``hash`` (0 and GENESIS in a log with none); the bytes a
    crash left after its line, without the newline that ends them (None when nothing follows
    it); and whether the file lacks its final newline (the next write must end that line)."""

    seq: int
    hash: str
    fragment: bytes | None
    unterminated: bool


def read_tail(fd: int, path: Path, size: int) -> Tail:
    """The tail of the log open on ``fd``, ``size`` bytes long (the caller holds the lock)."""
    if size == 0:
        return Tail(0, GENESIS, None, unterminated=False)
    start = size
    window = b""
    examined = size  # lines from here to the end were tried already
    while True:
        step = min(start, max(_CHUNK, len(window)))
        start -= step
        window = _pread(fd, path, step, start) + window
        found = _last_record(window[: examined - start], complete_first=start == 0)
        if found is None and start > 0 and size - start <= MAX_FRAGMENT:
            first_newline = window.find(b"\n")
            if first_newline >= 0:
                examined = start + first_newline + 1
            continue
        seq, digest, end = found or (0, GENESIS, 0)
        if len(window) - end > MAX_FRAGMENT:
            raise AuditUnavailable(
                path,
                f"more than {MAX_FRAGMENT // (1024 * 1024)} MiB at its end are not audit "
                "records, so the log cannot be continued: it is not an audit log, or it was "
                "damaged",
                "run `tidectl audit verify` on it, keep it as evidence, and move it aside to "
                "start a new log",
            )
        return Tail(seq, digest, _fragment(window[end:]), not window.endswith(b"\n"))


def _last_record(window: bytes, *, complete_first: bool) -> tuple[int, str, int] | None:
    """The last line of ``window`` that is a record: its seq, hash, and the offset just past
    its newline (or the window's end). The first line counts only when ``complete_first``."""
    lines = window.split(b"\n")
    past = len(window)  # just past line `index`, its newline included
    for index in range(len(lines) - 1, -1 if complete_first else 0, -1):
        line = lines[index]
        after = past
        past -= len(line) + (index < len(lines) - 1)
        if not line:
            continue
        try:
            _, record = parse(line)
        except NotARecord:
            continue
        return record.seq, record.hash, after
    return None


def _fragment(after_last_record: bytes) -> bytes | None:
    """What a crash left after the last record, without the newline that ends it, if any."""
    return after_last_record.removesuffix(b"\n") if after_last_record else None


def _pread(fd: int, path: Path, length: int, offset: int) -> bytes:
    try:
        data = os.pread(fd, length, offset)
    except OSError as error:
        raise AuditUnavailable.from_os(
            path, "cannot read the end of the audit log", error
        ) from None
    if len(data) != length:
        raise AuditUnavailable(
            path,
            "the audit log shrank while it was locked (another program truncates it)",
            "find what truncates it: an audit log is only ever appended to",
        )
    return data
