"""Fast, small reads of /proc and /sys files.

Probes read hundreds of tiny files a tick (eight HCAs carry about 160 counters). ``open()``
builds a buffered text wrapper per call; ``os.open``/``os.read`` costs a third of that, which
is what keeps a tick under its CPU budget. Every function raises ``OSError`` on failure so
callers decide whether a failed read is an error on a field or on the whole section.
"""

from __future__ import annotations

import os
from typing import List, Optional

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


def read_lines(path: str) -> List[str]:
    """All lines of a possibly long file (/proc/mounts, /proc/diskstats)."""
    with open(path, "rb") as handle:
        data = handle.read()
    return data.decode("utf-8", "replace").splitlines()
