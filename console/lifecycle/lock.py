"""One control plane per store: an exclusive lock held while it runs.

Two control planes on one store would be two reconcile loops acting on one cluster — each
adopting what the other launched, each retrying what the other did. The store's file is
shared by readers (``tidectl nodes``) as SQLite's WAL allows; acting on it is one process's.

``flock`` on a file beside the store, not SQLite's own locking: SQLite locks per transaction,
and what must be exclusive is the whole life of a control plane. The kernel drops the lock
when its holder dies (``kill -9`` included), so a crash never leaves the store locked. The
holder's pid is written into the file, for the sentence a second one gets.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Self

from tidectl.console.lifecycle.errors import StoreError

__all__ = ["StoreLock", "StoreLocked", "lock_path"]


class StoreLocked(StoreError):
    """Another process runs a control plane on this store."""


def lock_path(store: Path) -> Path:
    return store.with_name(store.name + ".lock")


class StoreLock:
    """Held from :meth:`acquire` (or ``with``) until :meth:`release`; ``who`` names the
    holder in the lock file (a front end, for the sentence a second one reads)."""

    def __init__(self, store: Path, who: str) -> None:
        self.path = lock_path(store)
        self.who = who
        self._fd: int | None = None

    def acquire(self) -> Self:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise StoreLocked(
                f"the store {self.path.with_suffix('')} is in use by {holder or 'another tidectl'}"
                ": one control plane acts on a cluster at a time; act from that one, or stop it "
                "first"
            ) from None
        except OSError as error:
            os.close(fd)
            raise StoreError(f"cannot lock {self.path}: {error.strerror}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.who} (pid {os.getpid()})".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # closing drops the flock

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _read(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
    return ""
