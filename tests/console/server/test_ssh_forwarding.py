"""docs/server.md's recipe for remote operators, as written: ``ssh -N -L LOCAL:REMOTE`` forwards
the service's Unix socket over a real sshd, a CLI call through the forwarded socket is carried
out, and the service sees the SSH login's user — not the user running the client."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.sshd import SshdHosts
from tidectl.console.config.model import Role, RolesSettings
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.roles import Roles
from tidectl.console.server.client import RemotePlane
from tidectl.console.server.service import Service

ANY = Caller("ignored", Frontend.CLI)


@pytest.fixture
def local() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tfw-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def test_the_socket_forwarded_over_ssh_acts_as_the_ssh_login(
    service: Service,
    sshd_hosts: SshdHosts,
    local: Path,
) -> None:
    # The head node's operators' group may open the socket; here, the SSH login may, and it
    # is an operator.
    service.path.chmod(0o666)
    roles = RolesSettings({Role.OPERATOR: (sshd_hosts.user,)})
    service.plane.roles = Roles(roles, service.path.parent / "cluster.toml")
    forwarded = local / "lab.sock"
    name = sshd_hosts.names[0]
    argv = sshd_hosts.ssh_argv(name, "")[:-2]  # the options, without "user@host command"
    host = sshd_hosts[name]
    tunnel = subprocess.Popen(
        [
            *argv,
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-L",
            f"{forwarded}:{service.path}",
            f"{sshd_hosts.user}@{host.address}",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with asyncio.timeout(15):
            while not forwarded.exists():
                assert tunnel.poll() is None, tunnel.stderr.read() if tunnel.stderr else ""
                await asyncio.sleep(0.05)
        async with RemotePlane(forwarded, Frontend.CLI) as remote:
            assert remote.user == sshd_hosts.user != pwd.getpwuid(os.getuid()).pw_name
            result = await remote.burst(ANY, "gpu", count=1)
        assert result.launched == 1
        intent = service.plane.store.intent(result.intent_id or "")
        assert intent is not None and intent.actor == sshd_hosts.user
    finally:
        tunnel.terminate()  # our own child, by its PID
        tunnel.wait(10)
