"""Fast, small reads of /proc and /sys files.

Probes read hundreds of tiny files a tick (eight HCAs carry about 160 counters). ``open()``
builds a buffered text wrapper per call; ``os.open``/``os.read`` costs a third of that, which
is what keeps a tick under its CPU budget. Every function raises ``OSError`` on failure so
callers decide whether a failed read is an error on a field or on the whole section.
"""

from __future__ import annotations

import os
from typing import Optional

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
