"""The SSH algorithms tidectl's client offers: modern ones only.

asyncssh, like OpenSSH, still speaks the old algorithms for old servers. A control plane that
runs commands as a privileged user on every node should not: SHA-1 signatures (``ssh-rsa``),
CBC ciphers, SHA-1 and MD5 MACs and SHA-1 key exchanges are left out, so a node (or a
man in the middle) that offers only those is refused at key exchange, before anything is
sent. Each list is in order of preference; every node OpenSSH 7.4 (2016) or newer runs
speaks the first ones.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ENCRYPTION", "KEX", "MACS", "SERVER_HOST_KEYS", "SIGNATURES"]

KEX: Final = (
    "mlkem768x25519-sha256",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group14-sha256",
)
ENCRYPTION: Final = (
    "chacha20-poly1305@openssh.com",
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)
MACS: Final = (
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "umac-128-etm@openssh.com",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "umac-128@openssh.com",
)
#: How the client signs its login (no SHA-1 ``ssh-rsa``).
SIGNATURES: Final = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
)
#: The host keys (and host certificates, for ``@cert-authority``) the client accepts.
SERVER_HOST_KEYS: Final = (
    "ssh-ed25519-cert-v01@openssh.com",
    "ecdsa-sha2-nistp256-cert-v01@openssh.com",
    "ecdsa-sha2-nistp384-cert-v01@openssh.com",
    "ecdsa-sha2-nistp521-cert-v01@openssh.com",
    "rsa-sha2-512-cert-v01@openssh.com",
    "rsa-sha2-256-cert-v01@openssh.com",
    *SIGNATURES,
)
