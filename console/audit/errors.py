"""What the audit log refuses, with a sentence a person can act on."""

from __future__ import annotations

import errno
from pathlib import Path

__all__ = ["AuditUnavailable"]


class AuditUnavailable(Exception):
    """The audit log cannot be opened, read or written; ``str()`` says what failed, where, and
    what to do. The control plane refuses changes while it is raised (it fails closed)."""

    def __init__(self, path: Path, what: str, todo: str) -> None:
        super().__init__(f"{path}: {what}; {todo}")
        self.path = path
        self.what = what
        self.todo = todo

    @classmethod
    def from_os(cls, path: Path, doing: str, error: OSError) -> AuditUnavailable:
        """``doing`` ("cannot write the audit log") and the OS's reason, with what to do."""
        reason = error.strerror or str(error)
        return cls(path, f"{doing} ({reason})", _todo(error))


def _todo(error: OSError) -> str:
    match error.errno:
        case errno.ENOSPC | errno.EDQUOT:
            return "free space on that file system (nothing is changed until the log is written)"
        case errno.EACCES | errno.EPERM | errno.EROFS:
            return "make the file and its folder writable by this user, or set another path"
        case errno.ENOENT | errno.ENOTDIR | errno.EEXIST:
            return "check the path: its folder must exist and be a folder"
        case errno.EISDIR:
            return "the path is a folder: name a file in it"
        case _:
            return "check the path, its file system and its permissions"
