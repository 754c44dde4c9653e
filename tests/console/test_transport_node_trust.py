"""A node's own SSH trust (``NodeSpec.known_hosts`` / ``identity_file``): a cloud node's key,
handed over by its provider, is checked instead of the cluster's known_hosts, never besides it.

Against the in-process asyncssh node of ``tests/fakes/ssh_node.py``; its ``commands`` prove
that nothing ran when a key did not match.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.fakes.ssh_node import FakeNode, make_fake_node
from tidectl.console.config.model import NodeSpec, SshSettings
from tidectl.console.transport.errors import AuthFailed, HostKeyMismatch
from tidectl.console.transport.ssh import SshConnector


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[FakeNode]:
    fake = await make_fake_node(tmp_path / "node").start()
    yield fake
    await fake.stop()


def stranger_line(node: FakeNode) -> str:
    other = asyncssh.generate_private_key("ssh-ed25519")
    return f"[127.0.0.1]:{node.port} {other.export_public_key().decode().strip()}\n"


def cluster_settings(tmp_path: Path, known_hosts: str = "") -> SshSettings:
    """The cluster's own settings: a known_hosts file that does not list the node (unless
    told), and an identity the node does not accept."""
    path = tmp_path / "cluster_known_hosts"
    path.write_text(known_hosts)
    identity = tmp_path / "cluster_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(identity))
    return SshSettings(
        user="tidectl",
        identity_file=identity,
        known_hosts=path,
        connect_timeout_s=2.0,
        login_timeout_s=2.0,
    )


def cloud_spec(node: FakeNode, known_hosts: str | None = None, name: str = "c1") -> NodeSpec:
    return NodeSpec(
        name=name,
        address="127.0.0.1",
        port=node.port,
        site="cloud",
        user="tidectl",
        known_hosts=node.known_hosts.read_text() if known_hosts is None else known_hosts,
        identity_file=node.client_key_path,
    )


async def test_a_handed_over_key_and_identity_log_in_where_the_cluster_knows_neither(
    node: FakeNode, tmp_path: Path
) -> None:
    connector = SshConnector(cluster_settings(tmp_path))
    conn = await connector.connect(cloud_spec(node))
    async with conn:
        result = await conn.run("hostname", check=False)
    assert result.stdout == "fake\n"
    # The same node without its own trust is checked against the cluster's file, which does
    # not list it: as before, refused.
    plain = replace(cloud_spec(node), known_hosts=None)
    with pytest.raises(HostKeyMismatch, match=r"does not match .*cluster_known_hosts"):
        await connector.connect(plain)


async def test_a_wrong_handed_over_key_is_refused_even_when_the_cluster_file_has_the_right_one(
    node: FakeNode, tmp_path: Path
) -> None:
    connector = SshConnector(cluster_settings(tmp_path, known_hosts=node.known_hosts.read_text()))
    with pytest.raises(HostKeyMismatch) as caught:
        await connector.connect(cloud_spec(node, known_hosts=stranger_line(node)))
    message = str(caught.value)
    assert message.startswith("c1: the host key of 127.0.0.1:")
    assert "does not match the key its provider handed over" in message
    assert "no command was sent" in message and "terminate the instance" in message
    assert "known_hosts" not in message  # no advice to edit a file that played no part
    assert node.commands == []


async def test_an_empty_handed_over_key_trusts_nothing(node: FakeNode, tmp_path: Path) -> None:
    connector = SshConnector(cluster_settings(tmp_path, known_hosts=node.known_hosts.read_text()))
    with pytest.raises(HostKeyMismatch, match="does not match the key its provider handed over"):
        await connector.connect(cloud_spec(node, known_hosts=""))
    assert node.commands == []


async def test_unreadable_handed_over_key_or_identity_says_which(
    node: FakeNode, tmp_path: Path
) -> None:
    connector = SshConnector(cluster_settings(tmp_path))
    with pytest.raises(HostKeyMismatch) as key_error:
        await connector.connect(cloud_spec(node, known_hosts="garbage\n"))
    assert "the host key its provider handed over cannot be read" in str(key_error.value)
    assert "Invalid known hosts entry" in str(key_error.value)
    gone = tmp_path / "no-such-key"
    with pytest.raises(AuthFailed) as identity_error:
        await connector.connect(replace(cloud_spec(node), identity_file=gone))
    assert f"cannot read the node's identity file {gone} (No such file" in str(identity_error.value)
    assert node.commands == []


async def test_handed_over_keys_are_parsed_once_per_node_and_identities_once_per_path(
    node: FakeNode, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connector = SshConnector(cluster_settings(tmp_path))
    parsed: list[str] = []
    loaded: list[object] = []
    real_import, real_load = asyncssh.import_known_hosts, asyncssh.load_keypairs

    def counting_import(text: str) -> asyncssh.SSHKnownHosts:
        parsed.append(text)
        return real_import(text)

    def counting_load(keys: Any) -> Any:
        loaded.append(keys)
        return real_load(keys)

    monkeypatch.setattr(asyncssh, "import_known_hosts", counting_import)
    monkeypatch.setattr(asyncssh, "load_keypairs", counting_load)
    for name in ("c1", "c1", "c2"):
        conn = await connector.connect(cloud_spec(node, name=name))
        conn.close()
    assert len(parsed) == 2  # c1 once, c2 once
    assert len(loaded) == 1  # one key file shared by both
    # A node whose handed-over key changed (a new instance under the name) is parsed again;
    # a forgotten node is parsed anew when it comes back.
    with pytest.raises(HostKeyMismatch):
        await connector.connect(cloud_spec(node, name="c1", known_hosts=stranger_line(node)))
    connector.forget("c2")
    conn = await connector.connect(cloud_spec(node, name="c2"))
    conn.close()
    assert len(parsed) == 4
