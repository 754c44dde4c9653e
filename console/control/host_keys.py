"""Accepting a new on-prem node's host key, in the console only, after a person saw it.

tidectl never trusts a key on first use. A node that is not in known_hosts yet stays out
(``host-key-mismatch``) until someone adds its key; in the console an admin may do that here:
the key the node presents is shown (:meth:`HostKeyTrust.presented`), the person compares its
fingerprint with one obtained out of band, and accepting (:meth:`HostKeyTrust.accept`) writes
exactly that key to ``[ssh] known_hosts`` — if the node still presents it. A node whose entry
exists and differs is never "accepted" here: a changed key is what a man in the middle looks
like, and it takes an edit of the file by someone who checked.

Cloud nodes are not on this path: their keys come from what their provider vouches for
(``lifecycle/bootstrap.py``).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncssh

from tidectl.console.config.model import ClusterConfig, NodeSpec
from tidectl.console.transport.errors import TransportError
from tidectl.console.transport.printed_keys import host_pattern
from tidectl.console.transport.ssh import SshConnector

__all__ = ["HostKeyRefused", "HostKeyTrust", "PresentedKey"]


class HostKeyRefused(Exception):
    """The key cannot be accepted; ``str()`` says why and what to do."""


@dataclass(frozen=True, slots=True)
class PresentedKey:
    """What a node presents now, and whether known_hosts says anything of it yet."""

    node: str
    address: str
    port: int
    key_type: str  # "ssh-ed25519"
    fingerprint: str  # "SHA256:..."
    listed: bool  # known_hosts already holds a key (or CA) for this address

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"


class HostKeyTrust:
    """Reads and extends ``config.ssh.known_hosts`` for the cluster's own nodes."""

    def __init__(
        self,
        config: ClusterConfig,
        connector: SshConnector | None = None,
        *,
        trusted: Callable[[str], None] = lambda _node: None,
    ) -> None:
        """``connector``: the collector's (its jump host); ``trusted(node)`` is told of each
        key added (the collector retries that node's link at once)."""
        self._config = config
        self._nodes = {spec.name: spec for spec in config.nodes}
        self._connector = connector
        self._trusted = trusted
        self._lock = asyncio.Lock()  # one accept at a time: check and append stay together

    @property
    def known_hosts(self) -> Path:
        return self._config.ssh.known_hosts

    def _spec(self, node: str) -> NodeSpec:
        spec = self._nodes.get(node)
        if spec is None:
            raise HostKeyRefused(
                f"{node} is not one of cluster.toml's nodes; only their keys are accepted "
                "here (a cloud node's key comes from what its provider vouches for)"
            )
        if spec.known_hosts is not None:
            raise HostKeyRefused(f"{node} is checked against its own key, not known_hosts")
        return spec

    async def presented(self, node: str) -> PresentedKey:
        """The key ``node`` presents now (key exchange only) and whether it is new."""
        spec = self._spec(node)
        key = await self._fetch(spec)
        return PresentedKey(
            node=node,
            address=spec.address,
            port=spec.port,
            key_type=key.get_algorithm(),
            fingerprint=key.get_fingerprint("sha256"),
            listed=await asyncio.to_thread(self._listed, spec),
        )

    async def accept(self, node: str, fingerprint: str, *, actor: str, request_id: str) -> str:
        """Add the key ``node`` presents to known_hosts, if its fingerprint is
        ``fingerprint`` (the one the person saw) and known_hosts lists nothing for it yet.
        Returns the line written."""
        spec = self._spec(node)
        async with self._lock:
            if await asyncio.to_thread(self._listed, spec):
                raise HostKeyRefused(
                    f"known_hosts {self.known_hosts} already lists a key for {node} "
                    f"({spec.address}:{spec.port}); a changed key is never accepted from the "
                    "console: check the new key out of band and replace the line by hand"
                )
            key = await self._fetch(spec)
            now = key.get_fingerprint("sha256")
            if now != fingerprint:
                raise HostKeyRefused(
                    f"{node} now presents {now}, not the {fingerprint} that was shown; "
                    "nothing was written. Look again before accepting"
                )
            public = key.export_public_key("openssh").decode().split()
            line = f"{host_pattern(spec.address, spec.port)} {public[0]} {public[1]}"
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            note = f"# {node}: {now} accepted by {actor} in the console {stamp} ({request_id})"
            await asyncio.to_thread(self._append, f"{note}\n{line}\n")
        self._trusted(node)
        return line

    async def _fetch(self, spec: NodeSpec) -> asyncssh.SSHKey:
        if self._connector is None:
            self._connector = SshConnector(self._config.ssh)
        try:
            return await self._connector.presented_key(spec)
        except TransportError as error:
            raise HostKeyRefused(f"cannot fetch {spec.name}'s host key: {error.message}") from None

    def _listed(self, spec: NodeSpec) -> bool:
        try:
            trusted = asyncssh.read_known_hosts(str(self.known_hosts))
        except (OSError, ValueError, asyncssh.Error) as error:
            raise HostKeyRefused(
                f"known_hosts {self.known_hosts} cannot be read ({error}); fix it first"
            ) from None
        host_keys, ca_keys, *_ = trusted.match(spec.address, "", spec.port)
        return bool(host_keys or ca_keys)

    def _append(self, text: str) -> None:
        """Appended under an exclusive lock and fsynced: a line half-written by a crash would
        leave a file asyncssh cannot parse, and a second writer would interleave."""
        try:
            with self.known_hosts.open("a+b") as out:
                fcntl.flock(out, fcntl.LOCK_EX)
                size = out.seek(0, os.SEEK_END)
                if size:  # a last line without its newline would swallow ours
                    out.seek(size - 1)
                    if out.read(1) != b"\n":
                        text = "\n" + text
                out.write(text.encode())
                out.flush()
                os.fsync(out.fileno())
        except OSError as error:
            raise HostKeyRefused(
                f"known_hosts {self.known_hosts} cannot be written ({error.strerror}); "
                "nothing was accepted"
            ) from None
