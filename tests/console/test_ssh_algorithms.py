"""The SSH client speaks modern algorithms only and asks for no forwarding: a real sshd that
offers only a SHA-1 key exchange, only CBC ciphers or only SHA-1 MACs is refused before any
command is sent, and a server that would allow agent and X11 forwarding sees neither asked."""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import asyncssh
import pytest

from tests.harness.sshd import SshdHosts
from tidectl.console.config.loader import load_config
from tidectl.console.config.model import NodeSpec, SshSettings
from tidectl.console.transport.errors import TransportError
from tidectl.console.transport.ssh import SshConnector


@pytest.mark.parametrize(
    ("weak", "lines"),
    [
        ("key exchange", ["KexAlgorithms diffie-hellman-group14-sha1"]),
        ("cipher", ["Ciphers aes128-cbc,aes256-cbc"]),
        ("mac", ["MACs hmac-sha1", "Ciphers aes128-ctr"]),  # ctr: so the MAC is negotiated
    ],
)
async def test_a_server_offering_only_weak_algorithms_is_refused(
    sshd_hosts_factory: Callable[..., SshdHosts], weak: str, lines: list[str]
) -> None:
    hosts = sshd_hosts_factory(1, extra_config=lines)
    folder = Path(tempfile.mkdtemp(prefix="tweak-", dir="/tmp"))
    config = load_config(hosts.write_cluster_toml(folder / "cluster.toml"))
    connector = SshConnector(config.ssh)
    (spec,) = config.nodes
    try:
        with pytest.raises(TransportError) as refused:
            await connector.connect(spec)
        said = str(refused.value).lower()
        if "algorithm" not in said:
            # sshd may see first that nothing matches and drop the connection without a word
            # (it did once in CI): then prove it was the algorithms — the same server answers
            # a client that offers the weak ones.
            assert "connection lost" in said, (weak, said)
            offered = dict(line.split(" ", 1) for line in lines)
            options = asyncssh.SSHClientConnectionOptions(
                kex_algs=offered.get("KexAlgorithms", ()),
                encryption_algs=offered.get("Ciphers", ()),
                mac_algs=offered.get("MACs", ()),
            )
            key = await asyncssh.get_server_host_key(
                spec.address, spec.port, config=None, options=options
            )
            assert key is not None, weak
    finally:
        await connector.close()


class _Recording(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return False  # no authentication: the test is about what the client asks after


async def test_the_client_asks_for_no_agent_x11_or_port_forwarding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that would grant agent and X11 forwarding, and a client side with an agent
    running and a display set (what forwarding would pass on): the command's session has
    neither, and no port forwarding was requested on the connection."""
    agent_socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(agent_socket)], stdout=subprocess.DEVNULL
    )
    for _ in range(100):
        if agent_socket.exists():
            break
        await asyncio.sleep(0.02)
    monkeypatch.setenv("SSH_AUTH_SOCK", str(agent_socket))
    monkeypatch.setenv("DISPLAY", "localhost:10.0")
    try:
        await _ask_and_see(tmp_path)
    finally:
        agent.terminate()  # our own child, by its PID
        agent.wait(10)


async def _ask_and_see(tmp_path: Path) -> None:
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    seen: list[tuple[str | None, str | None]] = []

    async def process(proc: asyncssh.SSHServerProcess[str]) -> None:
        channel = proc.channel  # the server channel (line_editor=False: not wrapped)
        seen.append((channel.get_agent_path(), channel.get_x11_display()))  # type: ignore[attr-defined]
        proc.stdout.write("ran\n")
        proc.exit(0)

    class Server(_Recording):
        def server_requested(self, listen_host: str, listen_port: int) -> bool:
            seen.append(("port forwarding", f"{listen_host}:{listen_port}"))
            return False

    server = await asyncssh.create_server(
        Server,
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        process_factory=process,
        agent_forwarding=True,
        x11_forwarding=True,
        line_editor=False,
    )
    try:
        port = server.sockets[0].getsockname()[1]
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode()}")
        settings = SshSettings(user="t", identity_file=None, known_hosts=known)
        connector = SshConnector(settings)
        conn = await connector.connect(NodeSpec("n1", "127.0.0.1", port, "s", "t"))
        result = await conn.run("true", check=False)
        conn.close()
        await connector.close()
        assert (result.exit_status, result.stdout) == (0, "ran\n")
        assert seen == [(None, None)]  # one session: no agent, no display, no forwarding
    finally:
        server.close()
        await server.wait_closed()
