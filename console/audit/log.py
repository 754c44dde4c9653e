"""The audit log's writer: one JSON line per record, appended under a lock, fsynced.

**Durability.** The file is opened with ``O_APPEND`` (created mode 0600) and every record is
one ``write`` followed by ``fsync``: when :meth:`AuditLog.append` returns, the record is on
disk. A write that fails part-way (a full disk) is cut back off under the lock, so it leaves
nothing; a crash of the machine mid-write can still leave a torn last line, which the next
record acknowledges (see ``docs/audit.md``).

**Several writers.** Appends are serialised with ``flock`` on the log file itself, and the
last record's ``seq`` and ``hash`` are read under that lock, from the end of the file: two
processes appending to one log make one chain, never a fork. Threads of one process share the
file (and ``flock`` does not tell them apart), so a thread lock comes first.

**Fails closed.** Anything that stops a record reaching the disk raises
:class:`AuditUnavailable`, with a sentence; the control plane refuses the change it was about
to make rather than make it unrecorded.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from tidectl.console.audit.errors import AuditUnavailable
from tidectl.console.audit.record import DECISIONS, acknowledge, canonical, digest, timestamp
from tidectl.console.audit.redact import redact, scrub, text
from tidectl.console.audit.tail import Tail, read_tail

__all__ = ["LOCK_TIMEOUT_S", "AuditLog", "default_path"]

#: How long an append waits for another writer's lock. An append holds it for one write and
#: one fsync; this long means the holder is stuck (stopped, or on a hung file system).
LOCK_TIMEOUT_S: Final = 10.0
# The first and the longest wait between tries: short, because a try only wins in the gap
# between another writer's appends, and a writer appending in a loop leaves short gaps.
_LOCK_POLL_S: Final = (0.0002, 0.002)


def default_path(store_path: Path) -> Path:
    """The audit log beside a store: ``<store file name>.audit.jsonl``."""
    return store_path.with_name(store_path.name + ".audit.jsonl")


class AuditLog:
    """An open audit log: :meth:`append` records, :meth:`close` when done (or ``with``).

    Opening creates the file (and missing folders, mode 0700) and reads its end, so a log that
    cannot be written or continued is refused here, before anything is done.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._thread_lock = threading.Lock()
        self._fd: int | None = _open(self.path)
        try:
            with self._locked() as fd:
                read_tail(fd, self.path, self._size(fd))
        except BaseException:
            self.close()
            raise

    def append(
        self,
        *,
        actor: str,
        frontend: str,
        action: str,
        targets: Sequence[str],
        params: Mapping[str, Any],
        decision: str,
        rule: str,
        outcome: str,
        request_id: str,
    ) -> int:
        """Write one record and return its ``seq`` once it is on disk. ``params`` are
        redacted here (:func:`~tidectl.console.audit.redact.redact`), and AWS keys in
        ``outcome`` replaced; raises :class:`AuditUnavailable` when the record cannot be
        written, and ValueError or TypeError for a record no caller should make."""
        content = _content(
            actor=actor,
            frontend=frontend,
            action=action,
            targets=targets,
            params=params,
            decision=decision,
            rule=rule,
            outcome=outcome,
            request_id=request_id,
        )
        with self._locked() as fd:
            size = self._size(fd)
            tail = read_tail(fd, self.path, size)
            fields = _chained(content, tail)
            line = canonical(fields) + b"\n"
            self._write(fd, (b"\n" if tail.unterminated else b"") + line, size)
            return int(fields["seq"])

    def close(self) -> None:
        with self._thread_lock:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- under the lock ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        with self._thread_lock:
            fd = self._fd
            if fd is None:
                raise AuditUnavailable(
                    self.path, "this audit log was closed", "open it again to append"
                )
            _flock(fd, self.path)
            try:
                yield fd
            finally:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _size(self, fd: int) -> int:
        """The file's size, after checking that it is still the file at :attr:`path`: records
        written to a file moved aside or deleted would be lost to anyone reading the path."""
        try:
            held = os.fstat(fd)
            named = os.stat(self.path)
        except FileNotFoundError:
            named = None
        except OSError as error:
            raise AuditUnavailable.from_os(
                self.path, "cannot examine the audit log", error
            ) from None
        if named is None or (named.st_dev, named.st_ino) != (held.st_dev, held.st_ino):
            raise AuditUnavailable(
                self.path,
                "the audit log was removed or replaced since tidectl opened it",
                "keep the old file (it is the record of what was done) and restart tidectl to "
                "write to the file now at that path",
            )
        return held.st_size

    def _write(self, fd: int, data: bytes, size: int) -> None:
        written = 0
        try:
            while written < len(data):
                written += os.write(fd, data[written:])
        except OSError as error:
            # Cut the part that was written back off: we hold the lock, nobody else wrote.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise AuditUnavailable.from_os(self.path, "cannot write the audit log", error) from None
        try:
            os.fsync(fd)
        except OSError as error:
            # Whether the record reached the disk is unknown: it is left, and the change it
            # records is refused anyway.
            raise AuditUnavailable.from_os(
                self.path, "cannot flush the audit log to disk", error
            ) from None


def _content(
    *,
    actor: str,
    frontend: str,
    action: str,
    targets: Sequence[str],
    params: Mapping[str, Any],
    decision: str,
    rule: str,
    outcome: str,
    request_id: str,
) -> dict[str, Any]:
    """The caller's part of a record, checked, redacted and storable."""
    said = {
        "actor": actor,
        "frontend": frontend,
        "action": action,
        "rule": rule,
        "outcome": outcome,
        "request_id": request_id,
    }
    for name, value in said.items():
        if not isinstance(value, str):
            raise TypeError(f"an audit record's {name} is a string, not {value!r}")
    if decision not in DECISIONS:
        raise ValueError(f"an audit record's decision is 'allowed' or 'denied', not {decision!r}")
    if isinstance(targets, str | bytes) or not all(isinstance(t, str) for t in targets):
        raise TypeError(f"an audit record's targets are a list of names, not {targets!r}")
    if not isinstance(params, Mapping):
        raise TypeError(f"an audit record's params are a mapping, not {params!r}")
    return {
        **{name: text(str.__str__(value)) for name, value in said.items()},
        "outcome": scrub(outcome),
        "targets": [text(str.__str__(t)) for t in targets],
        "params": redact(params),
        "decision": str.__str__(decision),
    }


def _chained(content: dict[str, Any], tail: Tail) -> dict[str, Any]:
    """The record after ``tail``: numbered, timed, chained and hashed."""
    fields = {**content, "seq": tail.seq + 1, "at": timestamp(), "prev": tail.hash}
    if tail.fragment is not None:
        torn = acknowledge(tail.fragment)
        fields["torn"] = {"bytes": torn.bytes, "sha256": torn.sha256}
    fields["hash"] = digest(fields)
    return fields


def _open(path: Path) -> int:
    """Open ``path`` for appending, creating it (0600) and its missing folders (0700)."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise AuditUnavailable.from_os(
            path, "cannot create the audit log's folder", error
        ) from None
    # O_NONBLOCK: a FIFO at the path must not hang the open; it is refused just below.
    flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | os.O_NONBLOCK
    created = False
    try:
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
            created = True
        except FileExistsError:
            fd = os.open(path, flags)
    except OSError as error:
        raise AuditUnavailable.from_os(path, "cannot open the audit log", error) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise AuditUnavailable(
                path, "the audit log's path is not a regular file", "name a file"
            )
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        if created:
            _sync_folder(path.parent)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _sync_folder(folder: Path) -> None:
    """Make a new file's name durable (the file's own fsync does not cover its folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        # Some file systems refuse fsync on a folder (EINVAL); their names are durable anyway.
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _flock(fd: int, path: Path) -> None:
    """Take the exclusive lock, waiting at most LOCK_TIMEOUT_S (a stuck holder must not hang
    the control plane)."""
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    pause = _LOCK_POLL_S[0]
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        except OSError as error:
            if error.errno != errno.EINTR:
                raise AuditUnavailable.from_os(path, "cannot lock the audit log", error) from None
        if time.monotonic() >= deadline:
            raise AuditUnavailable(
                path,
                f"another process has held the audit log's lock for {LOCK_TIMEOUT_S:.0f} s",
                "find the stuck tidectl (lsof on the file) and stop it",
            )
        time.sleep(pause)
        pause = min(pause * 2, _LOCK_POLL_S[1])
