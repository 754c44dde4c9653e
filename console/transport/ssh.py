"""Opening verified SSH connections to nodes with asyncssh.

One options object for every node (built once: parsing keys and known_hosts per connection
would cost a 1,000-node fleet seconds), a semaphore that bounds connects in flight (sshd's
``MaxStartups`` drops bursts of new connections to one host, and a cold fan-out costs sshd
CPU per connection), and host keys always checked against the configured known_hosts —
never ``known_hosts=None``, never added automatically.

A cloud node's spec may carry its own trust: the known_hosts text its provider handed over
(checked instead of the cluster's file, so a stranger's key in that file never vouches for
it) and the client key it accepts. Each is parsed once and kept: per node for the text, per
path for the key, so a burst of nodes sharing one provider key loads it once.
"""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from tidectl.console.config.model import NodeSpec, SshSettings
from tidectl.console.transport import algorithms
from tidectl.console.transport.errors import (
    HANDED_OVER,
    HandedOverKeyUnreadable,
    IdentityUnreadable,
    KeySource,
    KnownHostsUnreadable,
    Target,
    classify,
)


@dataclass(slots=True)
class _KnownHostsCache:
    """known_hosts parsed once, re-read when the file changes (an operator fixed a key)."""

    path: Path
    stamp: tuple[float, int, int] = (0.0, 0, 0)
    parsed: asyncssh.SSHKnownHosts | None = None

    def get(self) -> asyncssh.SSHKnownHosts:
        try:
            info = self.path.stat()
            stamp = (info.st_mtime, info.st_size, info.st_ino)
            if self.parsed is None or stamp != self.stamp:
                self.parsed = asyncssh.read_known_hosts(str(self.path))
                self.stamp = stamp
        except OSError as exc:
            # Not "cannot reach the node": the node may be fine; we cannot check its key.
            raise KnownHostsUnreadable(self.path, exc) from exc
        return self.parsed


class SshConnector:
    """Connects to nodes with the cluster's SSH settings."""

    def __init__(self, settings: SshSettings) -> None:
        self.settings = settings
        self._known_hosts = _KnownHostsCache(settings.known_hosts)
        self._client_keys = (
            asyncssh.load_keypairs([str(settings.identity_file)])
            if settings.identity_file is not None
            else None
        )
        #: Node name → (the handed-over text, parsed): re-parsed only if the text changes.
        self._node_known_hosts: dict[str, tuple[str, asyncssh.SSHKnownHosts]] = {}
        #: A node's own identity file → its keys, loaded once per path.
        self._identities: dict[Path, Sequence[asyncssh.SSHKeyPair]] = {}
        self._semaphore = asyncio.Semaphore(settings.fanout)
        self._jump: asyncssh.SSHClientConnection | None = None
        self._jump_lock = asyncio.Lock()

    def target(self, spec: NodeSpec) -> Target:
        return Target(spec.name, spec.address, spec.port, spec.user)

    def key_source(self, spec: NodeSpec) -> KeySource:
        """Where ``spec``'s expected host key comes from, for error sentences."""
        if spec.known_hosts is not None:
            return HANDED_OVER
        return KeySource.file(self.settings.known_hosts)

    def forget(self, name: str) -> None:
        """Drop what was cached for a node that left (its handed-over key)."""
        self._node_known_hosts.pop(name, None)

    def _trusted_keys(self, spec: NodeSpec) -> asyncssh.SSHKnownHosts:
        text = spec.known_hosts
        if text is None:
            return self._known_hosts.get()
        cached = self._node_known_hosts.get(spec.name)
        if cached is not None and cached[0] == text:
            return cached[1]
        try:
            parsed = asyncssh.import_known_hosts(text)
        except (ValueError, asyncssh.Error) as exc:
            raise HandedOverKeyUnreadable(exc) from exc
        self._node_known_hosts[spec.name] = (text, parsed)
        return parsed

    def _keys(self, spec: NodeSpec) -> Sequence[asyncssh.SSHKeyPair] | None:
        path = spec.identity_file
        if path is None:
            return self._client_keys
        keys = self._identities.get(path)
        if keys is None:
            try:
                keys = asyncssh.load_keypairs([str(path)])
            except (OSError, ValueError, asyncssh.Error) as exc:
                raise IdentityUnreadable(path, exc) from exc
            self._identities[path] = keys
        return keys

    def _options(
        self,
        user: str,
        known_hosts: asyncssh.SSHKnownHosts,
        client_keys: Sequence[asyncssh.SSHKeyPair] | None,
    ) -> asyncssh.SSHClientConnectionOptions:
        settings = self.settings
        return asyncssh.SSHClientConnectionOptions(
            username=user,
            known_hosts=known_hosts,
            client_keys=client_keys,
            # Ours alone: no ~/.ssh/config, no ssh-agent keys when an identity is configured.
            config=None,
            agent_path=None if client_keys is not None else (),
            connect_timeout=settings.connect_timeout_s,
            login_timeout=settings.login_timeout_s,
            keepalive_interval=settings.keepalive_interval_s,
            keepalive_count_max=settings.keepalive_count_max,
            # Modern algorithms only (transport/algorithms.py), and nothing forwarded: the
            # nodes get no way back to the control plane's agent, display or ports.
            kex_algs=list(algorithms.KEX),
            encryption_algs=list(algorithms.ENCRYPTION),
            mac_algs=list(algorithms.MACS),
            signature_algs=list(algorithms.SIGNATURES),
            server_host_key_algs=list(algorithms.SERVER_HOST_KEYS),
            agent_forwarding=False,
            x11_forwarding=False,
        )

    async def _tunnel(self) -> asyncssh.SSHClientConnection | None:
        """The jump host's connection, opened once and shared by every node."""
        jump = self.settings.jump_host
        if not jump:
            return None
        async with self._jump_lock:
            if self._jump is not None and not self._jump.is_closed():
                return self._jump
            user, _, hostport = jump.rpartition("@")
            host, _, port = hostport.partition(":")
            target = Target("jump host", host, int(port or 22), user or self.settings.user)
            try:
                options = self._options(target.user, self._known_hosts.get(), self._client_keys)
                self._jump = await asyncssh.connect(host, int(port or 22), options=options)
            except Exception as exc:
                raise classify(target, exc, str(self.settings.known_hosts)) from exc
            return self._jump

    async def connect(self, spec: NodeSpec) -> asyncssh.SSHClientConnection:
        """A logged-in connection, or a TransportError saying why not."""
        target = self.target(spec)
        async with self._semaphore:
            try:
                options = self._options(spec.user, self._trusted_keys(spec), self._keys(spec))
                tunnel = await self._tunnel()
                return await asyncssh.connect(
                    spec.address,
                    spec.port,
                    tunnel=tunnel if tunnel is not None else (),
                    options=options,
                )
            except Exception as exc:
                raise classify(target, exc, self.key_source(spec)) from exc

    async def presented_key(self, spec: NodeSpec) -> asyncssh.SSHKey:
        """The host key ``spec``'s address presents now, by key exchange alone (no login,
        nothing of ours sent): for a person to compare with a fingerprint they got out of
        band, never trusted by itself."""
        target = self.target(spec)
        async with self._semaphore:
            try:
                tunnel = await self._tunnel()
                return await fetch_host_key(
                    spec.address,
                    spec.port,
                    timeout_s=self.settings.connect_timeout_s + self.settings.login_timeout_s,
                    tunnel=tunnel,
                )
            except Exception as exc:
                raise classify(target, exc, self.key_source(spec)) from exc

    async def close(self) -> None:
        if self._jump is not None:
            self._jump.close()
            await self._jump.wait_closed()


async def fetch_host_key(
    address: str,
    port: int,
    *,
    timeout_s: float,
    tunnel: asyncssh.SSHClientConnection | None = None,
) -> asyncssh.SSHKey:
    """The host key ``address:port`` presents, by a key exchange with our modern algorithms
    and nothing more. Raises what asyncssh or the socket raised (``classify`` reads it)."""
    options = asyncssh.SSHClientConnectionOptions(
        encryption_algs=list(algorithms.ENCRYPTION),
        mac_algs=list(algorithms.MACS),
        connect_timeout=timeout_s,
    )
    async with asyncio.timeout(timeout_s):
        key = await asyncssh.get_server_host_key(
            address,
            port,
            tunnel=tunnel if tunnel is not None else (),
            kex_algs=list(algorithms.KEX),
            server_host_key_algs=list(algorithms.SIGNATURES),
            config=None,
            options=options,
        )
    if key is None:  # asyncssh: the server sent no key (it closed during the exchange)
        raise asyncssh.ConnectionLost(f"{address}:{port} closed before presenting a host key")
    return key


def raise_fd_limit(wanted: int) -> None:
    """asyncssh needs a file descriptor per connection; Debian's soft limit is 1,024.

    Raised up to the hard limit; past it, connects fail with "Too many open files", which
    the node's link reports.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard, max(soft, wanted))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
