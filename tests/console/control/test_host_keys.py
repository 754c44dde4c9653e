"""Accepting a new on-prem node's host key (``control/host_keys.py``) through the ControlPlane,
against a real OpenSSH sshd whose key known_hosts does not list: shown first, accepted only
from the console by an admin, only while the node presents the fingerprint that was shown,
never over a key known_hosts already lists, and audited."""

from __future__ import annotations

import os
import pwd
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import asyncssh
import pytest

from tests.console.lifecycle.world import World
from tests.harness.sshd import SshdHosts
from tidectl.console.audit import AuditLog
from tidectl.console.audit.verify import read, verify
from tidectl.console.config.loader import load_config
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.server.client import RemotePlane
from tidectl.console.server.service import Service
from tidectl.console.transport.errors import HostKeyMismatch
from tidectl.console.transport.ssh import SshConnector

ME = pwd.getpwuid(os.getuid()).pw_name  # the service's socket peer: an admin too
ADA = Caller("ada", Frontend.CONSOLE)  # admin
OPAL = Caller("opal", Frontend.CONSOLE)  # operator
VIC = Caller("vic", Frontend.CONSOLE)  # viewer


@dataclass
class Site:
    plane: ControlPlane
    hosts: SshdHosts
    known_hosts: Path
    audit: Path

    @property
    def node(self) -> str:
        return self.hosts.names[0]

    def fingerprint(self) -> str:
        public = asyncssh.import_public_key(self.hosts.host_public_key(self.node))
        return public.get_fingerprint("sha256")

    async def connects(self) -> None:
        """A real login with the cluster's settings (the collector's connector)."""
        connector = SshConnector(self.plane.config.ssh)
        try:
            conn = await connector.connect(self.plane.config.nodes[0])
            conn.close()
            await conn.wait_closed()
        finally:
            await connector.close()


@pytest.fixture
async def site(world: World, sshd_hosts_factory: Callable[..., SshdHosts]) -> AsyncIterator[Site]:
    hosts = sshd_hosts_factory(1)
    folder = Path(tempfile.mkdtemp(prefix="tkeys-", dir="/tmp"))
    config_path = hosts.write_cluster_toml(folder / "cluster.toml")
    with config_path.open("a") as text:
        text.write(f'\n[roles]\nadmin = ["ada", "{ME}"]\noperator = ["opal"]\nviewer = ["vic"]\n')
    config = load_config(config_path)
    known_hosts = folder / "known_hosts"
    known_hosts.write_text("# the site's file: this node is not in it yet")  # no newline
    config = replace(config, ssh=replace(config.ssh, known_hosts=known_hosts))
    with AuditLog(folder / "audit.jsonl") as log:
        plane = ControlPlane(config, world.store, world.engine(), audit=log)
        yield Site(plane, hosts, known_hosts, folder / "audit.jsonl")


async def test_a_new_key_is_shown_accepted_in_the_console_and_audited(site: Site) -> None:
    with pytest.raises(HostKeyMismatch):
        await site.connects()  # not in known_hosts: refused, never trusted on first use
    shown = await site.plane.presented_host_key(VIC, site.node)  # a viewer may look
    assert (shown.fingerprint, shown.key_type, shown.listed) == (
        site.fingerprint(),
        "ssh-ed25519",
        False,
    )
    line = await site.plane.accept_host_key(
        ADA, site.node, fingerprint=shown.fingerprint, request_id="req-accept"
    )
    host = site.hosts[site.node]
    assert line == f"[{host.address}]:{host.port} {site.hosts.host_public_key(site.node)}"
    text = site.known_hosts.read_text()
    assert text.startswith("# the site's file: this node is not in it yet\n# ")
    assert text.endswith(f"{line}\n")
    assert "accepted by ada in the console" in text and "(req-accept)" in text
    await site.connects()  # the same settings now log in
    assert (await site.plane.presented_host_key(VIC, site.node)).listed

    records = [r for r in read(site.audit) if r.request_id == "req-accept"]
    assert [(r.actor, r.frontend, r.action, r.decision) for r in records] == [
        ("ada", "console", "accept-host-key", "allowed"),
        ("ada", "console", "accept-host-key", "allowed"),
    ]
    assert records[0].params == {"fingerprint": shown.fingerprint}
    assert records[1].outcome == f"done: {site.node}'s key {shown.fingerprint} added to known_hosts"
    assert verify(site.audit).ok


async def test_only_an_admin_in_the_console_may_accept(site: Site) -> None:
    fingerprint = site.fingerprint()
    before = site.known_hosts.read_text()
    with pytest.raises(Refused, match="opal may not accept-host-key: that needs the admin role"):
        await site.plane.accept_host_key(OPAL, site.node, fingerprint=fingerprint)
    for frontend in (Frontend.CLI, Frontend.PLAYBOOK, Frontend.NOTEBOOK):
        with pytest.raises(Refused, match="a host key is accepted only in the console"):
            await site.plane.accept_host_key(
                Caller("ada", frontend), site.node, fingerprint=fingerprint
            )
    assert site.known_hosts.read_text() == before


async def test_a_fingerprint_other_than_the_one_presented_writes_nothing(site: Site) -> None:
    before = site.known_hosts.read_text()
    stranger = asyncssh.generate_private_key("ssh-ed25519").get_fingerprint("sha256")
    with pytest.raises(Refused) as refused:
        await site.plane.accept_host_key(ADA, site.node, fingerprint=stranger)
    assert str(refused.value) == (
        f"{site.node} now presents {site.fingerprint()}, not the {stranger} that was shown; "
        "nothing was written. Look again before accepting"
    )
    assert site.known_hosts.read_text() == before
    outcomes = [r.outcome for r in read(site.audit) if r.action == "accept-host-key"]
    assert outcomes[-1].startswith("refused: ")


async def test_a_changed_key_is_never_accepted_from_the_console(site: Site) -> None:
    await site.plane.accept_host_key(ADA, site.node, fingerprint=site.fingerprint())
    site.hosts.rotate_host_key(site.node)  # reinstalled, or someone in the middle
    with pytest.raises(HostKeyMismatch):
        await site.connects()
    shown = await site.plane.presented_host_key(VIC, site.node)
    assert shown.listed and shown.fingerprint == site.fingerprint()
    before = site.known_hosts.read_text()
    with pytest.raises(Refused, match="a changed key is never accepted from the console"):
        await site.plane.accept_host_key(ADA, site.node, fingerprint=shown.fingerprint)
    assert site.known_hosts.read_text() == before


async def test_only_the_clusters_own_nodes_and_no_role_sees_nothing(site: Site) -> None:
    with pytest.raises(Refused, match=r"is not one of cluster\.toml's nodes"):
        await site.plane.presented_host_key(VIC, "gpu-burst-1")
    with pytest.raises(Refused, match="nobody may not read the cluster"):
        await site.plane.presented_host_key(Caller("nobody", Frontend.CONSOLE), site.node)


async def test_an_attached_console_accepts_through_the_service_and_a_script_cannot(
    site: Site,
) -> None:
    socket = Path(tempfile.mkdtemp(prefix="tk-", dir="/tmp")) / "s"
    service = Service(site.plane, socket)
    await service.start()
    try:
        async with RemotePlane(socket, Frontend.CLI) as script:
            shown = await script.presented_host_key(ADA, site.node)
            with pytest.raises(Refused, match="a host key is accepted only in the console"):
                await script.accept_host_key(ADA, site.node, fingerprint=shown.fingerprint)
        async with RemotePlane(socket, Frontend.CONSOLE) as console:
            line = await console.accept_host_key(ADA, site.node, fingerprint=shown.fingerprint)
        assert site.known_hosts.read_text().endswith(f"{line}\n")
        actors = [(r.actor, r.frontend) for r in read(site.audit) if r.outcome.startswith("done")]
        assert actors == [(ME, "console")]  # who the socket says, not who the caller claims
    finally:
        await service.aclose()
    await site.connects()
