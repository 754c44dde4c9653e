"""What cloud-init prints to an instance's serial console about its SSH host keys, for the
tests that hand a console to the EC2 fault proxy (``ec2_faults.show_console``) or parse one.

The layout is that of cloud-init's ``write-ssh-key-fingerprints`` (Ubuntu, Debian, Amazon
Linux): a fingerprints block (some images prefix it, Amazon Linux with ``ec2: ``) and a keys
block, amid the kernel's and cloud-init's own lines.
"""

from __future__ import annotations

import asyncssh


def public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


def fingerprint(key: asyncssh.SSHKey) -> str:
    return key.get_fingerprint("sha256")


def cloud_init_console(*keys: asyncssh.SSHKey, prefix: str = "", keys_block: bool = True) -> str:
    """What cloud-init's write-ssh-key-fingerprints prints, amid a kernel log."""
    lines = [
        "[    0.000000] Linux version 6.8.0-1015-aws (buildd@lcy02-amd64-076)",
        "[   12.345678] cloud-init[612]: Cloud-init v. 24.1 running 'modules:final'",
        f"{prefix}#############################################################",
        f"{prefix}-----BEGIN SSH HOST KEY FINGERPRINTS-----",
        *(f"{prefix}256 {fingerprint(k)} root@ip-10-0-0-5 (ED25519)" for k in keys),
        f"{prefix}-----END SSH HOST KEY FINGERPRINTS-----",
        f"{prefix}#############################################################",
    ]
    if keys_block:
        lines += [
            "-----BEGIN SSH HOST KEY KEYS-----",
            *(f"{public(k)} root@ip-10-0-0-5" for k in keys),
            "-----END SSH HOST KEY KEYS-----",
        ]
    lines.append("[   14.000001] cloud-init[612]: Cloud-init v. 24.1 finished")
    return "\r\n".join(lines) + "\r\n"
