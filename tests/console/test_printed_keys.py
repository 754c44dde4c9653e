"""Host keys a cloud instance printed to its console (``transport/printed_keys.py``): parsing
cloud-init's blocks as real images print them, and the known_hosts text they vouch for —
checked by connecting to a real asyncssh server (``tests/fakes/ssh_node.py``), whose
``commands`` prove nothing ran when a key was refused.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import pytest

from tests.fakes.cloud_init import cloud_init_console, fingerprint, public
from tests.fakes.ssh_node import FakeNode, make_fake_node
from tidectl.console.config.model import NodeSpec, SshSettings
from tidectl.console.transport.errors import HostKeyMismatch
from tidectl.console.transport.printed_keys import (
    HostKeysNotYet,
    HostKeysRefused,
    PrintedKeys,
    parse_console,
    trusted_lines,
)
from tidectl.console.transport.ssh import SshConnector

KEY = asyncssh.generate_private_key("ssh-ed25519")
OTHER = asyncssh.generate_private_key("ssh-ed25519")
ECDSA = asyncssh.generate_private_key("ecdsa-sha2-nistp256")


def test_keys_and_fingerprints_are_read_from_an_ubuntu_console() -> None:
    printed = parse_console(cloud_init_console(KEY, ECDSA))
    assert [public(k) for k in printed.keys] == [public(KEY), public(ECDSA)]
    assert printed.fingerprints == (fingerprint(KEY), fingerprint(ECDSA))


def test_an_amazon_linux_prefix_is_stripped_and_only_fingerprints_are_found() -> None:
    printed = parse_console(cloud_init_console(KEY, prefix="ec2: ", keys_block=False))
    assert printed.keys == ()
    assert printed.fingerprints == (fingerprint(KEY),)


def test_the_last_boot_wins_and_a_block_cut_off_is_ignored() -> None:
    first_boot = cloud_init_console(OTHER)
    second_boot = cloud_init_console(KEY)
    cut_off = "-----BEGIN SSH HOST KEY KEYS-----\n" + public(OTHER) + "\n"  # still being written
    printed = parse_console(first_boot + second_boot + cut_off)
    assert [public(k) for k in printed.keys] == [public(KEY)]
    assert printed.fingerprints == (fingerprint(KEY),)


def test_a_console_without_keys_or_with_garbage_shows_nothing() -> None:
    assert not parse_console("")
    assert not parse_console("[    0.000000] Linux version 6.8.0\nlogin: ")
    garbage = (
        "-----BEGIN SSH HOST KEY KEYS-----\nssh-ed25519 not-base64!\n"
        "-----END SSH HOST KEY KEYS-----"
    )
    assert not parse_console(garbage)


async def test_printed_keys_become_known_hosts_lines_for_the_address() -> None:
    text = await trusted_lines("i-1", "10.0.0.5", 22, PrintedKeys((KEY,), (fingerprint(KEY),)))
    assert text == f"10.0.0.5 {public(KEY)}\n"
    text = await trusted_lines("i-1", "10.0.0.5", 2222, PrintedKeys((KEY,)))
    assert text == f"[10.0.0.5]:2222 {public(KEY)}\n"


async def test_keys_that_disagree_with_their_fingerprints_are_refused() -> None:
    with pytest.raises(HostKeysRefused, match="not among the fingerprints it printed"):
        await trusted_lines("i-1", "10.0.0.5", 22, PrintedKeys((KEY,), (fingerprint(OTHER),)))


async def test_nothing_printed_and_no_ca_is_not_yet_and_a_ca_alone_vouches() -> None:
    with pytest.raises(HostKeysNotYet, match="has not shown its SSH host keys"):
        await trusted_lines("i-1", "10.0.0.5", 22, PrintedKeys())
    text = await trusted_lines("i-1", "10.0.0.5", 22, PrintedKeys(), host_ca=OTHER)
    assert text == f"@cert-authority 10.0.0.5 {public(OTHER)}\n"


# -- against a real SSH server -------------------------------------------------------------


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[FakeNode]:
    fake = await make_fake_node(tmp_path / "node").start()
    yield fake
    await fake.stop()


def connector(tmp_path: Path) -> SshConnector:
    known_hosts = tmp_path / "cluster_known_hosts"
    known_hosts.write_text("")  # the cluster knows no cloud node
    return SshConnector(
        SshSettings(
            user="tidectl",
            identity_file=None,
            known_hosts=known_hosts,
            connect_timeout_s=2.0,
            login_timeout_s=2.0,
        )
    )


def spec(node: FakeNode, known_hosts: str) -> NodeSpec:
    return NodeSpec(
        name="c1",
        address="127.0.0.1",
        port=node.port,
        site="cloud",
        user="tidectl",
        known_hosts=known_hosts,
        identity_file=node.client_key_path,
    )


async def test_a_printed_fingerprint_vouches_for_the_key_the_node_presents(
    node: FakeNode, tmp_path: Path
) -> None:
    printed = PrintedKeys((), (fingerprint(OTHER), fingerprint(node.host_key)))
    text = await trusted_lines("i-1", "127.0.0.1", node.port, printed)
    assert text == f"[127.0.0.1]:{node.port} {public(node.host_key)}\n"
    conn = await connector(tmp_path).connect(spec(node, text))
    conn.close()
    await conn.wait_closed()


async def test_a_wrong_printed_fingerprint_is_refused_before_any_login(node: FakeNode) -> None:
    printed = PrintedKeys((), (fingerprint(OTHER),))
    with pytest.raises(HostKeysRefused) as refused:
        await trusted_lines("i-1", "127.0.0.1", node.port, printed)
    assert f"presents host key {fingerprint(node.host_key)}" in str(refused.value)
    assert "no command was sent" in str(refused.value)
    assert node.commands == []


async def test_a_printed_key_that_is_not_the_nodes_sends_zero_commands(
    node: FakeNode, tmp_path: Path
) -> None:
    text = await trusted_lines("i-1", "127.0.0.1", node.port, PrintedKeys((OTHER,)))
    with pytest.raises(HostKeyMismatch, match="no command was sent"):
        await connector(tmp_path).connect(spec(node, text))
    assert node.commands == []


async def test_fingerprints_printed_before_sshd_answers_are_not_yet(tmp_path: Path) -> None:
    fake = make_fake_node(tmp_path / "down")
    await fake.start()
    port = fake.port
    await fake.stop()  # nothing listens there now
    started = time.monotonic()
    with pytest.raises(HostKeysNotYet, match="does not present a key yet"):
        await trusted_lines("i-1", "127.0.0.1", port, PrintedKeys((), (fingerprint(KEY),)))
    assert time.monotonic() - started < 5


async def test_a_host_certificate_from_the_sites_ca_vouches_and_another_cas_does_not(
    tmp_path: Path,
) -> None:
    ca = asyncssh.generate_private_key("ssh-ed25519")
    fake = make_fake_node(tmp_path / "signed")
    cert = ca.generate_host_certificate(fake.host_key, "c1", principals=["127.0.0.1"])
    fake.host_key_and_cert = (fake.host_key, cert)
    await fake.start()
    try:
        text = await trusted_lines("i-1", "127.0.0.1", fake.port, PrintedKeys(), host_ca=ca)
        conn = await connector(tmp_path).connect(spec(fake, text))
        conn.close()
        await conn.wait_closed()
        stranger_ca = asyncssh.generate_private_key("ssh-ed25519")
        text = await trusted_lines(
            "i-1", "127.0.0.1", fake.port, PrintedKeys(), host_ca=stranger_ca
        )
        with pytest.raises(HostKeyMismatch):
            await connector(tmp_path).connect(spec(fake, text))
        assert fake.commands == []
    finally:
        await fake.stop()
