"""Reading a log for a view that asks again every few seconds: the newest records a query
wants, and how far the hash chain verifies.

Verifying reads and hashes the whole file, as choosing records does, so both are kept until
the file changes: its device, inode, size and modification time, which an append always
changes. A view that refreshes while nothing is done costs one ``stat``. A rewrite that
keeps the size and puts the modification time back is not seen until the next append;
``tidectl audit verify`` is the check that counts.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from tidectl.console.audit.query import AuditQuery, newest
from tidectl.console.audit.record import AuditRecord
from tidectl.console.audit.verify import Verification, read, verify

__all__ = ["AuditPage", "AuditReader"]

_Stamp = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class AuditPage:
    """What a view shows of a log: ``records``, the newest that matched, oldest first;
    ``matched``, how many matched in all; ``chain``, what verifying the whole log found;
    ``path``, where the log is (None, with nothing else: the control plane keeps no log)."""

    path: str | None
    records: tuple[AuditRecord, ...] = ()
    matched: int = 0
    chain: Verification | None = None


class AuditReader:
    """Pages of the log at ``path``; safe from several threads (one reads at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._chain: tuple[_Stamp, Verification] | None = None
        self._page: tuple[_Stamp, AuditQuery, int, AuditPage] | None = None

    def page(self, query: AuditQuery, limit: int) -> AuditPage:
        """The newest ``limit`` records ``query`` matches and the chain's state. Raises
        :class:`~tidectl.console.audit.AuditUnavailable` when the log cannot be read."""
        with self._lock:
            stamp = self._stamp()
            if self._page is not None and stamp is not None:
                seen, asked, count, page = self._page
                if (seen, asked, count) == (stamp, query, limit):
                    return page
            chain = self._verified(stamp)
            records, matched = newest(read(self.path), query, limit)
            page = AuditPage(str(self.path), tuple(records), matched, chain)
            if stamp is not None:
                self._page = (stamp, query, limit, page)
            return page

    def _verified(self, stamp: _Stamp | None) -> Verification:
        if self._chain is not None and stamp is not None and self._chain[0] == stamp:
            return self._chain[1]
        result = verify(self.path)
        if stamp is not None:
            self._chain = (stamp, result)
        return result

    def _stamp(self) -> _Stamp | None:
        """What changes when the file does; None when it cannot be examined (``verify`` then
        says why, with what to do)."""
        try:
            held = os.stat(self.path)
        except OSError:
            return None
        return held.st_dev, held.st_ino, held.st_size, held.st_mtime_ns
