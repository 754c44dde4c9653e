"""Fast, small reads of /proc and /sys files.

Probes read hundreds of tiny files a tick (eight HCAs carry about 160 counters). ``open()``
builds a buffered text wrapper per call; ``os.open``/``os.read`` costs a third of that, which
is what keeps a tick under its CPU budget. Every function raises ``OSError`` on failure so
callers decide whether a failed read is an error on a field or on the whole section.
"""

from __future__ import annotations

import errno
import os
from typing import Callable, Optional

_MAX_READ = 1 << 16


def read_text(path: str) -> str:
    """The whole file (up to 64 KiB) as stripped text."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _MAX_READ)
    finally:
        os.close(fd)
    return data.decode("utf-8", "replace").strip()


def read_int(path: str) -> int:
    """A file holding one decimal integer (a sysfs counter). ValueError when it holds none."""
    return int(read_text(path))


def read_optional(path: str) -> Optional[str]:
    """The file's text, or None when it is missing or unreadable."""
    try:
        return read_text(path)
    except OSError:
        return None


def read_all(path: str) -> bytes:
    """Every byte of a file of any length (/proc/stat, /proc/diskstats, mountinfo).

    /proc/stat outgrows one 64 KiB read on big nodes (its ``intr`` line holds one number per
    IRQ) and the fields we need come after it.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        while True:
            data = os.read(fd, _MAX_READ)
            parts.append(data)
            # procfs fills a read as far as the file goes: a short read is the end, and
            # saves the extra read() that would return b"".
            if len(data) < _MAX_READ:
                break
    finally:
        os.close(fd)
    return b"".join(parts)


#: Errors of a read through a held descriptor that mean the file behind it is gone (a
#: network interface or device was removed): the path is opened afresh, once.
_GONE = frozenset({errno.ENODEV, errno.ENOENT, errno.ESTALE})


class HeldFile:
    """A /proc or /sys file kept open, re-read with one ``pread`` from offset 0.

    procfs and sysfs generate a file's text anew on every read from offset 0 (seq_file
    resets at 0; sysfs re-runs the attribute's show), so a held descriptor always yields the
    current value, and saves the ``open`` and ``close`` of every tick: on a virtualised node
    those two calls cost as much as the read (path lookup through /proc/self, /sys links).
    Not for files that are replaced by renaming (a held descriptor keeps the old one); a
    regular file rewritten in place, as the tests' fakes are, reads like procfs.

    Not thread-safe: one probe, one sampling thread at a time, like the probes themselves.
    """

    __slots__ = ("_fd", "_size", "keep_open", "path")

    def __init__(self, path: str, size: int = _MAX_READ, keep_open: bool = True) -> None:
        self.path = path
        self._size = max(1, size)  # one read of this many bytes is expected to get it all
        #: False: open and close on every read, as read_all does (a cap on descriptors).
        self.keep_open = keep_open
        self._fd: Optional[int] = None

    def read(self) -> bytes:
        """The whole file, now. Raises OSError; a file found gone is reopened once."""
        if not self.keep_open:
            return read_all(self.path)
        fd = self._fd
        if fd is None:
            fd = self._open()
        try:
            data = os.pread(fd, self._size, 0)
            if len(data) < self._size:
                return data  # procfs fills a read as far as the file goes: this is all of it
            return self._read_on(fd, data)
        except OSError as exc:
            if exc.errno not in _GONE:
                raise  # e.g. EINVAL from a down link's attribute: the file itself is fine
            self.close()
            fd = self._open()
            return self._read_on(fd, os.pread(fd, self._size, 0))

    def read_text(self) -> str:
        """The whole file as stripped text, like :func:`read_text`."""
        return self.read().decode("utf-8", "replace").strip()

    def close(self) -> None:
        """Release the descriptor; the next read opens the path again."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # Tests and short-lived probes drop probes without close(): do not leak descriptors.
        # os.close is bound here because module globals may be gone at interpreter exit.
        fd, self._fd = self._fd, None
        if fd is not None:
            try:  # noqa: SIM105 - contextlib, a global, may be gone at exit too
                _close(fd)
            except OSError:
                pass

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        self._fd = fd
        return fd

    def _read_on(self, fd: int, data: bytes) -> bytes:
        """``data`` and the rest of a file longer than one read (/proc/stat with thousands
        of IRQs); the next read then asks for enough to get it all at once."""
        if len(data) < self._size:
            return data
        parts = [data]
        offset = len(data)
        while True:
            chunk = os.pread(fd, _MAX_READ, offset)
            parts.append(chunk)
            offset += len(chunk)
            if len(chunk) < _MAX_READ:
                break
        self._size = offset + _MAX_READ
        return b"".join(parts)
