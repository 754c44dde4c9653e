"""Simulated nodes send SSH packets as OpenSSH's sshd does: no SSH_MSG_IGNORE before data.

asyncssh (2.24) puts an empty ``SSH_MSG_IGNORE`` in front of every packet it encrypts, an
old countermeasure for CBC ciphers; OpenSSH's sshd, what real nodes run, sends none with the
AEAD ciphers both ends negotiate. Left in, every agent line would reach the console as two
packets, and the collector benchmark would charge the console for decrypting and dispatching
a thousand packets a second that no real cluster sends (about a third of the console's SSH
reception, measured on the 2-core development machine).

The switch is per connection (an attribute on the instance shadows the class's method), made
in the server's ``connection_made``, so nothing else in the process changes; the sim's tests
check that a streaming client sees one packet per line.
"""

from __future__ import annotations

from typing import Any

import asyncssh
from asyncssh.constants import MSG_IGNORE

__all__ = ["send_no_ignore_packets"]


def send_no_ignore_packets(conn: asyncssh.SSHServerConnection) -> None:
    """Have ``conn`` drop the ``SSH_MSG_IGNORE`` packets asyncssh adds (the sim sends none of
    its own)."""
    send = conn.send_packet

    def send_packet(pkttype: int, *args: bytes, **kwargs: Any) -> None:
        if pkttype != MSG_IGNORE:
            send(pkttype, *args, **kwargs)

    # An instance attribute shadows the method: asyncssh's own self.send_packet finds it.
    conn.send_packet = send_packet  # type: ignore[method-assign]
