"""Host keys a cloud instance printed to its console, and the known_hosts text they vouch for.

A new cloud instance has host keys nobody has seen. cloud-init prints them (and their
SHA-256 fingerprints) to the instance's serial console once sshd has them::

    -----BEGIN SSH HOST KEY FINGERPRINTS-----
    256 SHA256:l4Jx... root@ip-10-0-0-5 (ED25519)
    -----END SSH HOST KEY FINGERPRINTS-----
    -----BEGIN SSH HOST KEY KEYS-----
    ssh-ed25519 AAAAC3Nz... root@ip-10-0-0-5
    -----END SSH HOST KEY KEYS-----

and the cloud's API hands that console to whoever may manage the instance (EC2
``GetConsoleOutput``). That channel is not the network we are about to trust, so a key read
there proves the instance's identity; a key learned by connecting would not (trust on first
use). Some images print only the fingerprints: then the key the address presents is fetched
(without logging in) and trusted only if its fingerprint is one the console printed.

A site may instead (or also) sign its images' host keys with an SSH certificate authority:
``host_ca`` adds an ``@cert-authority`` line, and a host certificate signed by it is enough.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import asyncssh

from tidectl.console.transport.ssh import fetch_host_key

__all__ = ["HostKeysNotYet", "HostKeysRefused", "PrintedKeys", "parse_console", "trusted_lines"]

_KEYS: Final = "SSH HOST KEY KEYS"
_FINGERPRINTS: Final = "SSH HOST KEY FINGERPRINTS"
FETCH_TIMEOUT_S: Final = 10.0


class HostKeysNotYet(Exception):
    """Nothing vouches for the instance's host key yet (its console has not shown the keys,
    or sshd does not answer yet); worth asking again later."""


class HostKeysRefused(Exception):
    """What the instance presents contradicts what vouches for it: never connect."""


@dataclass(frozen=True, slots=True)
class PrintedKeys:
    """The last complete host-key blocks of a console: public keys and SHA-256 fingerprints."""

    keys: tuple[asyncssh.SSHKey, ...] = ()
    fingerprints: tuple[str, ...] = ()  # "SHA256:..."

    def __bool__(self) -> bool:
        return bool(self.keys or self.fingerprints)


def _blocks(lines: Sequence[str], name: str) -> list[list[str]]:
    """Every complete ``-----BEGIN name-----`` … ``-----END name-----`` block's lines.

    Consoles interleave other output, and some images prefix every line cloud-init logs
    (Amazon Linux: ``ec2: ``): whatever precedes the BEGIN marker is taken as the block's
    prefix and stripped from its lines.
    """
    begin, end = f"-----BEGIN {name}-----", f"-----END {name}-----"
    found: list[list[str]] = []
    current: list[str] | None = None
    prefix = ""
    for raw in lines:
        line = raw.rstrip("\r\n")
        if begin in line:
            prefix = line[: line.index(begin)]
            current = []
        elif current is not None and end in line:
            found.append(current)
            current = None
        elif current is not None:
            current.append(line[len(prefix) :] if line.startswith(prefix) else line)
    return found  # a block cut off (the console still being written) is not complete


def parse_console(text: str) -> PrintedKeys:
    """The host keys and fingerprints in console output; empty when it shows none.

    When an instance booted more than once its console holds a block per boot: the last
    complete one is what sshd has now. Lines that are not keys are skipped (consoles carry
    noise), but a keys block of which no line parses counts as showing nothing.
    """
    lines = text.splitlines()
    keys: list[asyncssh.SSHKey] = []
    key_blocks = _blocks(lines, _KEYS)
    for line in key_blocks[-1] if key_blocks else []:
        fields = line.split()
        if len(fields) < 2:
            continue
        try:
            keys.append(asyncssh.import_public_key(f"{fields[0]} {fields[1]}"))
        except (asyncssh.KeyImportError, ValueError):
            continue
    fingerprints: list[str] = []
    fingerprint_blocks = _blocks(lines, _FINGERPRINTS)
    for line in fingerprint_blocks[-1] if fingerprint_blocks else []:
        fingerprints += [field for field in line.split() if field.startswith("SHA256:")][:1]
    return PrintedKeys(tuple(keys), tuple(fingerprints))


def host_pattern(address: str, port: int) -> str:
    """How known_hosts names ``address:port``."""
    return address if port == 22 else f"[{address}]:{port}"


async def trusted_lines(
    instance: str,
    address: str,
    port: int,
    printed: PrintedKeys,
    *,
    host_ca: asyncssh.SSHKey | None = None,
) -> str:
    """known_hosts text for the instance at ``address:port``: the keys its console vouches
    for, and the site's CA when there is one.

    Raises :class:`HostKeysNotYet` when nothing vouches for a key yet, and
    :class:`HostKeysRefused` when the console contradicts itself or the key the address
    presents is not one the console printed.
    """
    pattern = host_pattern(address, port)
    keys = list(printed.keys)
    if keys and printed.fingerprints:
        # Both blocks come from the same program on the same boot: they must agree.
        stray = [k for k in keys if k.get_fingerprint("sha256") not in printed.fingerprints]
        if stray:
            raise HostKeysRefused(
                f"the console of instance {instance} lists host key "
                f"{stray[0].get_fingerprint('sha256')}, which is not among the fingerprints it "
                "printed with it; the console cannot be trusted, so no key is: terminate it"
            )
    if not keys and printed.fingerprints:
        keys = [await _presented_key(instance, address, port, printed.fingerprints)]
    lines = [f"{pattern} {key.export_public_key('openssh').decode().strip()}" for key in keys]
    if host_ca is not None:
        ca = host_ca.export_public_key("openssh").decode().strip()
        lines.append(f"@cert-authority {pattern} {ca}")
    if not lines:
        raise HostKeysNotYet(
            f"instance {instance} has not shown its SSH host keys on its console yet "
            "(cloud-init prints them once sshd has keys; the cloud shows console output "
            "minutes after boot), and its pool names no bootstrap.host_ca"
        )
    return "\n".join(lines) + "\n"


async def _presented_key(
    instance: str, address: str, port: int, fingerprints: Sequence[str]
) -> asyncssh.SSHKey:
    """The key ``address:port`` presents, if its fingerprint is one the console printed.

    Fetched without logging in (nothing of ours is sent but the key exchange).
    """
    try:
        key = await fetch_host_key(address, port, timeout_s=FETCH_TIMEOUT_S)
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise HostKeysNotYet(
            f"instance {instance} printed host key fingerprints, but {address}:{port} "
            f"does not present a key yet ({exc})"
        ) from exc
    fingerprint = key.get_fingerprint("sha256")
    if fingerprint not in fingerprints:
        raise HostKeysRefused(
            f"{address}:{port} presents host key {fingerprint}, which is not among the "
            f"fingerprints instance {instance} printed on its console "
            f"({', '.join(fingerprints)}): something else answers at its address; no "
            "command was sent, and none will be: terminate it"
        )
    return key
