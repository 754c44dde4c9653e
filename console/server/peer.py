"""Who is on the other end of a Unix socket, as the kernel says (``SO_PEERCRED``).

The service identifies every client this way: the uid the connecting process runs as, which
no client can choose. It is what roles and the audit log use.
"""

from __future__ import annotations

import pwd
import socket
import struct
from dataclasses import dataclass

__all__ = ["Peer", "peer_of"]

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True, slots=True)
class Peer:
    pid: int
    uid: int
    gid: int
    user: str  # the login name of uid, or "uid-N" for a uid with no entry


def peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid-{uid}"
    return Peer(pid, uid, gid, user)
