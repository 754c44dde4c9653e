"""Reading an audit log back: :func:`verify` checks the whole chain, :func:`read` lists it.

:func:`verify` stops at the first line that is not what tidectl wrote and names it (the line
number, 1-based, and the record's ``seq``): a changed byte (the line no longer parses, is no
longer in canonical form, or no longer matches its hash), a removed, repeated or reordered
record (``seq`` out of step, or ``prev`` not the hash of the record before), a record that was
inserted (its ``prev``), or a line that is not a record at all.

Lines that are not records are accepted in two places only, both a crash's doing: as the torn
tail (the last line, with no newline after it: ``ok`` stays true and ``torn_tail`` says so),
and just before a record whose ``torn`` names exactly their bytes — the writer that came after
the crash acknowledged them. The file is read as a stream: a log of any size verifies in
constant memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tidectl.console.audit.errors import AuditUnavailable
from tidectl.console.audit.record import (
    GENESIS,
    AuditRecord,
    NotARecord,
    acknowledge,
    canonical,
    digest,
    parse,
)

__all__ = ["Verification", "read", "verify"]


@dataclass(frozen=True, slots=True)
class Verification:
    """What :func:`verify` found. ``records``: how many verified (before ``first_bad``, when
    there is one); ``first_bad``: the 1-based line number of the first line that is not what
    was written; ``why``: a sentence, for a bad line or a torn tail; ``last_hash``: the hash of
    the last record that verified (note it elsewhere to make a rewrite of the whole tail
    evident too)."""

    ok: bool
    records: int
    first_bad: int | None
    why: str | None
    torn_tail: bool
    last_hash: str | None = None


def verify(path: Path) -> Verification:
    """Check every record of the log at ``path``; raises :class:`AuditUnavailable` when the
    file cannot be read."""
    path = Path(path)
    with _opened(path) as file:
        return _Chain(path).check(file)


def read(path: Path) -> Iterator[AuditRecord]:
    """The records of the log at ``path``, in file order: complete, parseable records only
    (a torn tail, or an acknowledged fragment, is skipped). Nothing is verified: use
    :func:`verify` for that. Raises :class:`AuditUnavailable` when the file cannot be read."""
    path = Path(path)
    file = _opened(path)
    return _records(path, file)


class _Chain:
    """The walk along the lines: what verified so far, and the non-record lines since."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records = 0
        self.seq = 0
        self.hash = GENESIS
        self.junk: list[bytes] = []
        self.junk_from = 0
        self.junk_why = ""

    def check(self, file: BinaryIO) -> Verification:
        number = 0
        terminated = True
        for raw in _lines(self.path, file):
            number += 1
            terminated = raw.endswith(b"\n")
            line = raw.removesuffix(b"\n")
            try:
                fields, record = parse(line)
            except NotARecord as error:
                if not self.junk:
                    self.junk_from, self.junk_why = number, str(error)
                self.junk.append(line)
                continue
            problem = self._acknowledged(record)
            if problem is not None:
                return self._bad(self.junk_from if self.junk else number, problem)
            problem = _changed(fields, record, line) or self._follows(record)
            if problem is not None:
                return self._bad(number, problem)
            self.records += 1
            self.seq, self.hash, self.junk = record.seq, record.hash, []
        if not self.junk:
            return Verification(True, self.records, None, None, False, self._last())
        if terminated:
            return self._bad(
                self.junk_from,
                f"not an audit record ({self.junk_why}), and no record after it acknowledges "
                "it as a torn write",
            )
        size = len(b"\n".join(self.junk))
        if len(self.junk) == 1:
            why = (
                f"the last line is torn (a crash mid-write), {size} bytes; everything before "
                "it verifies"
            )
        else:
            why = (
                f"the last {len(self.junk)} lines (from line {self.junk_from}) are torn (crashes "
                f"mid-write), {size} bytes; everything before them verifies"
            )
        return Verification(True, self.records, None, why, True, self._last())

    def _acknowledged(self, record: AuditRecord) -> str | None:
        """Whether the non-record lines before ``record`` are exactly what it acknowledges."""
        if not self.junk:
            if record.torn is None:
                return None
            return (
                f"seq {record.seq} acknowledges a torn fragment of {record.torn.bytes} bytes "
                "before it, and there is none: the fragment was removed"
            )
        last = self.junk_from + len(self.junk) - 1
        lines = f"line {last}" if last == self.junk_from else f"lines {self.junk_from}-{last}"
        if record.torn is None:
            return (
                f"not an audit record ({self.junk_why}), and seq {record.seq} after it does "
                "not acknowledge it as a torn write"
            )
        if acknowledge(b"\n".join(self.junk)) != record.torn:
            return (
                f"{lines} are not audit records ({self.junk_why}), and they are not the torn "
                f"fragment that seq {record.seq} acknowledges ({record.torn.bytes} bytes, "
                f"sha256 {record.torn.sha256[:12]}...)"
            )
        return None

    def _follows(self, record: AuditRecord) -> str | None:
        """Whether ``record`` is the one that comes after the last one verified."""
        if record.seq != self.seq + 1:
            if self.seq == 0:
                return f"the log starts at seq {record.seq}: records before it are missing"
            return (
                f"seq {record.seq} follows seq {self.seq}: records are missing, repeated or out "
                "of order"
            )
        if record.prev != self.hash:
            if self.seq == 0:
                return (
                    f"seq {record.seq}'s prev is not the genesis value (64 zeros): it is not "
                    "the first record that was written"
                )
            return (
                f"seq {record.seq}'s prev is not the hash of seq {self.seq} before it: a record "
                "was removed, inserted or reordered"
            )
        return None

    def _bad(self, number: int, why: str) -> Verification:
        return Verification(False, self.records, number, why, False, self._last())

    def _last(self) -> str | None:
        return self.hash if self.records else None


def _changed(fields: dict[str, object], record: AuditRecord, line: bytes) -> str | None:
    """Whether the line is not the record as it was written."""
    if digest(fields) != record.hash:
        return (
            f"seq {record.seq}'s hash does not match its content: the record was changed after "
            "it was written"
        )
    if canonical(fields) != line:
        return (
            f"seq {record.seq} is not in the canonical form tidectl writes (its hash matches): "
            "the line was edited"
        )
    return None


def _opened(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise AuditUnavailable(
            path,
            "there is no audit log here",
            "check the path; the control plane creates the log with the first change it records",
        ) from None
    except OSError as error:
        raise AuditUnavailable.from_os(path, "cannot read the audit log", error) from None


def _lines(path: Path, file: BinaryIO) -> Iterator[bytes]:
    """The file's lines, each with its newline (the last may have none); a read error is
    AuditUnavailable."""
    iterator = iter(file)
    while True:
        try:
            line = next(iterator)
        except StopIteration:
            return
        except OSError as error:
            raise AuditUnavailable.from_os(path, "cannot read the audit log", error) from None
        yield line


def _records(path: Path, file: BinaryIO) -> Iterator[AuditRecord]:
    with file:
        for raw in _lines(path, file):
            try:
                _, record = parse(raw.removesuffix(b"\n"))
            except NotARecord:
                continue
            yield record
