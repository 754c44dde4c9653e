"""Running a process as a daemon that outlives the SSH session that started it, one at a time.

The watchdog is started over SSH and must live on after the session ends (that is its whole
point: the session ends when the control plane dies). So it forks twice and starts a new
session (no SIGHUP from the old one, no terminal to get back), points stdin at /dev/null and
stdout and stderr at its log, so that sshd sees the session's pipes close and ends it.

One daemon per pid file: the daemon holds an exclusive ``flock`` on it for its whole life
(the kernel drops it when the process ends, however it ends, so a stale pid file never blocks
a new start), and a second start that cannot take the lock says who holds it and starts
nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
import traceback
from typing import Callable, Optional, Tuple

#: Errors ``flock(LOCK_NB)`` gives when another process holds the lock.
_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def take_pid_lock(path: str) -> Tuple[Optional[int], str]:
    """Open and lock the pid file: (its descriptor, "") when this process now holds it, or
    (None, what the file says: the holder's pid) when another process does."""
    # Close-on-exec: a command the daemon runs (the poweroff) must not inherit the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        os.close(fd)
        if exc.errno in _HELD:
            return None, holder or "unknown"
        raise
    return fd, ""


def write_pid(fd: int, pid: int) -> None:
    """Record ``pid`` in the locked pid file."""
    os.ftruncate(fd, 0)
    os.pwrite(fd, b"%d\n" % pid, 0)


def detach(lock_fd: int, log_path: str, main: Callable[[], int]) -> int:
    """Run ``main`` in a daemon that holds the pid lock ``lock_fd`` and writes to
    ``log_path``; returns the daemon's pid to the caller (the daemon itself never returns:
    it exits with ``main``'s status). Raises OSError when the daemon did not start."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()  # or the children would write the caller's buffered output again
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        status = 1
        try:
            os.close(read_end)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)  # the first child: the daemon is now nobody's session leader
            os.chdir("/")
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(devnull)
            os.close(log)
            write_pid(lock_fd, os.getpid())
            os.write(write_end, b"%d" % os.getpid())
            os.close(write_end)
            status = main()
        except BaseException:
            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(status)
    os.close(write_end)
    os.close(lock_fd)  # the daemon holds the lock now
    os.waitpid(child, 0)
    said = b""
    while True:
        chunk = os.read(read_end, 64)
        if not chunk:
            break
        said += chunk
    os.close(read_end)
    if not said:
        raise OSError("the watchdog did not start; see %s" % log_path)
    return int(said)
