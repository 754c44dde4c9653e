"""The lease: a file the streaming agent touches every sample, and the watchdog reads.

While a control plane holds an SSH session to the node, its agent streams and touches the
lease; when the control plane dies, the session and the agent die with it and the lease goes
stale. The watchdog (``watchdog.py``) reads only the file's modification time, so the lease
costs one ``utime`` a sample and holds nothing to parse.
"""

from __future__ import annotations

import os
from typing import Optional

#: What goes next to a lease file ``F``: the watchdog's pid (and lock) file and its log.
PID_SUFFIX = ".watchdog.pid"
LOG_SUFFIX = ".watchdog.log"


def touch(path: str) -> None:
    """Set the lease's modification time to now, creating the file (and its folder) if
    missing. Raises OSError when it cannot: an agent that cannot hold its lease must say so,
    or a watchdog would take a watched node for an abandoned one."""
    try:
        os.utime(path, None)
    except FileNotFoundError:
        folder = os.path.dirname(path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        with open(path, "a"):
            pass


def touched_at(path: str) -> Optional[float]:
    """When the lease was last touched (epoch seconds), or None when there is no such file."""
    try:
        return os.stat(path).st_mtime
    except FileNotFoundError:
        return None
