"""An in-process asyncssh server standing in for one node, as asyncssh's own tests do.

Real SSH on 127.0.0.1 (port 0), real host and client keys, real SFTP into a folder of the
test's, and a known_hosts file. What a command does is a scenario the test chooses: the
agent's real stream (the simulated node through the real ``Stream``), garbage, a flood, an
endless line, silence, or an exit with a message. Commands it received are recorded, so a
test can assert that none was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from tidectl.agents import protocol
from tidectl.agents.probes.sim import make_sim_probes
from tidectl.agents.runner import Stream

Scenario = Callable[[asyncssh.SSHServerProcess[bytes]], Awaitable[None]]


async def sim_agent(process: asyncssh.SSHServerProcess[bytes], interval: float = 0.1) -> None:
    """The real agent code with the simulated node, as a node would run it."""
    stream = Stream(
        make_sim_probes(11, hostname="fake"), sys.stdout.buffer, interval_s=interval, threaded=False
    )
    process.stdout.write(protocol.encode(stream.hello()))
    while True:
        process.stdout.write(protocol.encode(stream.tick()))
        await process.stdout.drain()
        await asyncio.sleep(interval)


@dataclass
class FakeNode:
    root: Path
    host_key: asyncssh.SSHKey
    client_key: asyncssh.SSHKey
    known_hosts: Path
    client_key_path: Path
    port: int = 0
    python_version: str = "3.11.2"
    stream: Scenario = sim_agent
    commands: list[str] = field(default_factory=list)
    server: asyncssh.SSHAcceptor | None = None
    #: Set to present a host certificate (signed by a CA) instead of the bare key.
    host_key_and_cert: tuple[asyncssh.SSHKey, asyncssh.SSHCertificate] | None = None
    connections: set[asyncssh.SSHServerConnection] = field(default_factory=set)

    def _server_factory(self) -> asyncssh.SSHServer:
        node = self

        class Tracking(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                node.connections.add(conn)

            def connection_lost(self, exc: Exception | None) -> None:
                node.connections.difference_update({c for c in node.connections if c.is_closed()})

        return Tracking()

    async def _handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        command = process.command or ""
        self.commands.append(command)
        words = shlex.split(command)
        try:
            if words[:2] == ["python3", "-c"]:
                process.stdout.write(self.python_version.encode() + b"\n")
                process.exit(0)
            elif words[:1] == ["python3"] or words[:1] == ["exec"]:
                if "stream" in words:
                    await self.stream(process)
                    process.exit(0)
                else:
                    process.exit(2)
            elif words[:1] == ["hostname"]:
                process.stdout.write(b"fake\n")
                process.exit(0)
            else:
                process.stderr.write(f"sh: 1: {words[0] if words else ''}: not found\n".encode())
                process.exit(127)
        except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged, BrokenPipeError):
            process.exit(1)
        except (ConnectionError, asyncssh.Error):
            pass

    async def start(self, port: int = 0) -> FakeNode:
        root = str(self.root)

        def sftp_factory(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
            return asyncssh.SFTPServer(chan, chroot=root.encode())

        self.server = await asyncssh.listen(
            "127.0.0.1",
            port,
            server_host_keys=[self.host_key_and_cert or self.host_key],
            authorized_client_keys=asyncssh.import_authorized_keys(
                self.client_key.export_public_key().decode()
            ),
            process_factory=self._handle,
            sftp_factory=sftp_factory,
            server_factory=self._server_factory,
            encoding=None,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        if self.host_key_and_cert is None:
            self.known_hosts.write_text(
                f"[127.0.0.1]:{self.port} {self.host_key.export_public_key().decode().strip()}\n"
            )
        return self

    async def stop(self) -> None:
        """Stop listening and drop every open connection: the node went away."""
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
            self.server = None


def make_fake_node(tmp: Path) -> FakeNode:
    root = tmp / "root"
    root.mkdir(parents=True, exist_ok=True)
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key_path = tmp / "client_key"
    client_key.write_private_key(str(client_key_path))
    return FakeNode(
        root=root,
        host_key=asyncssh.generate_private_key("ssh-ed25519"),
        client_key=client_key,
        known_hosts=tmp / "known_hosts",
        client_key_path=client_key_path,
    )
