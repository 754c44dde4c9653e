"""``tidectl serve``'s listener against a real ControlPlane (store, sim cloud, sim scheduler):
the client's identity comes from the socket, never from what it says; results and refusals
come back as the plane's own types; garbage, half requests and dead clients disturb nobody;
two Unix users acting through one service are told apart."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.console.lifecycle.world import S, World
from tidectl.console.config.model import Role, RolesSettings
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.roles import Roles
from tidectl.console.lifecycle.burst import BurstResult
from tidectl.console.server.client import RemotePlane, ServiceUnavailable
from tidectl.console.server.service import Service, ServiceError

ANY = Caller("ignored", Frontend.NOTEBOOK)  # the service never reads a caller's user
ME = pwd.getpwuid(os.getuid()).pw_name


async def test_actions_run_as_the_socket_peer_and_return_the_planes_types(
    service: Service, world: World
) -> None:
    async with RemotePlane(service.path, Frontend.NOTEBOOK) as remote:
        assert (remote.user, remote.cluster) == (ME, "c1")
        result = await remote.burst(ANY, "gpu", count=2, request_id="req-9")
        assert isinstance(result, BurstResult) and result.launched == 2
        intent = world.store.intent(result.intent_id or "")
        assert intent is not None
        assert (intent.actor, intent.frontend, intent.request_id) == (ME, "notebook", "req-9")
        progress = await remote.wait(result.nodes, {S.ACTIVE}, timeout_s=20)
        assert set(progress.states.values()) == {S.ACTIVE}
        drained = await remote.drain(ANY, list(result.nodes), reason="done")
        assert {o.after for o in drained.nodes} == {S.DRAINING}
        assert {n.name for n in await remote.nodes("gpu")} == set(result.nodes)
        assert await remote.price_per_hour("gpu") == 24.0


async def test_refusals_come_back_typed_and_the_connection_goes_on(service: Service) -> None:
    async with RemotePlane(service.path, Frontend.CLI) as remote:
        with pytest.raises(Refused, match="no pool named 'tpu'") as refused:
            await remote.burst(ANY, "tpu", count=1, request_id="r1")
        assert refused.value.request_id == "r1"
        with pytest.raises(Refused, match="no node named gpu-9"):
            await remote.resume(ANY, "gpu-9")
        assert (await remote.burst(ANY, "gpu", ensure=0)).launched == 0


async def test_garbage_and_half_requests_disturb_nobody(service: Service) -> None:
    reader, writer = await asyncio.open_unix_connection(str(service.path))
    writer.write(b"this is not json\n")
    writer.write(b'{"id": 7, "method": "launch-the-missiles"}\n')
    writer.write(b'{"id": 8, "method": "drain", "params": {"nodes": 5}}\n')
    await writer.drain()
    answers = [json.loads(await reader.readline()) for _ in range(3)]
    assert [a["error"]["kind"] for a in answers] == ["bad-request"] * 3
    assert "not a request" in answers[0]["error"]["message"]
    assert "no method 'launch-the-missiles'" in answers[1]["error"]["message"]
    assert "nodes must be a node set" in answers[2]["error"]["message"]
    # A client that dies half-way through a line: gone, and nobody else notices.
    writer.write(b'{"id": 9, "method": "bur')
    await writer.drain()
    writer.transport.abort()
    async with RemotePlane(service.path, Frontend.CLI) as other:
        assert (await other.burst(ANY, "gpu", ensure=0)).launched == 0


async def test_the_socket_file_is_private_to_its_group_and_removed_at_the_end(
    world: World, folder: Path
) -> None:
    service = Service(ControlPlaneStub(), folder / "x.sock")  # type: ignore[arg-type]
    (folder / "x.sock").write_text("not a socket")
    with pytest.raises(ServiceError, match="exists and is not a socket"):
        await service.start()
    (folder / "x.sock").unlink()
    await service.start()
    assert stat.S_IMODE((folder / "x.sock").stat().st_mode) == 0o660
    await service.aclose()
    assert not (folder / "x.sock").exists()
    # A socket left by a service that died is replaced.
    stale = Service(ControlPlaneStub(), folder / "x.sock")  # type: ignore[arg-type]
    await stale.start()
    stale._server.close()  # type: ignore[union-attr]  # dies without cleaning up
    await service.start()
    await service.aclose()
    with pytest.raises(ServiceUnavailable, match="no tidectl service answers"):
        await RemotePlane(folder / "x.sock", Frontend.CLI).connect()
    with pytest.raises(ServiceError, match="no group named"):
        await Service(ControlPlaneStub(), folder / "y.sock", group="no-such-group").start()  # type: ignore[arg-type]


def ControlPlaneStub() -> SimpleNamespace:
    """Enough of a plane for a service that only listens."""
    return SimpleNamespace(config=SimpleNamespace(name="stub"))


def _make_user(name: str) -> int:
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed")
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", name], check=True)
        return pwd.getpwnam(name).pw_uid


# A client in plain Python (no tidectl, run as another user who cannot read root's venv): it
# says hello and asks for one drain, and prints the answers.
_CLIENT = textwrap.dedent(
    """
    import json, socket, sys
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    f = s.makefile("rwb")
    for request in ({"id": 1, "method": "hello", "params": {"frontend": "cli"}},
                    {"id": 2, "method": "drain",
                     "params": {"nodes": [sys.argv[2]], "reason": "by " + sys.argv[3]}}):
        f.write(json.dumps(request).encode() + b"\\n"); f.flush()
        print(f.readline().decode().strip())
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="creating users needs root")
async def test_two_unix_users_are_told_apart_by_the_socket(
    service: Service, world: World, folder: Path
) -> None:
    users = {name: _make_user(name) for name in ("tidectl-ana", "tidectl-bo")}
    os.chmod(service.path, 0o666)  # both may connect; who they are is the kernel's word
    # Their own roles: ana operates, bo only watches.
    roles = {Role.OPERATOR: ("tidectl-ana",), Role.VIEWER: ("tidectl-bo",)}
    service.plane.roles = Roles(RolesSettings(roles), folder / "cluster.toml")
    answers: dict[str, dict[str, object]] = {}
    for index, (name, uid) in enumerate(users.items(), start=1):
        await world.scheduler.add_node(f"onprem{index}", 8)
        done = await asyncio.to_thread(
            subprocess.run,
            ["/usr/bin/python3", "-c", _CLIENT, str(service.path), f"onprem{index}", name],
            user=uid,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        hello, drained = (json.loads(line) for line in done.stdout.splitlines())
        assert hello["result"]["user"] == name
        answers[name] = drained
    assert "error" not in answers["tidectl-ana"], answers
    refused = answers["tidectl-bo"]["error"]
    assert refused["kind"] == "refused"
    assert refused["message"].startswith(
        "tidectl-bo may not drain: that needs the operator role, and tidectl-bo has the "
        "viewer role ([roles] viewer lists tidectl-bo)"
    )
    actors = {
        t.node: (t.actor, t.reason)
        for _, t in world.store.transitions_since(0)
        if t.after is S.DRAINING
    }
    assert actors == {"onprem1": ("tidectl-ana", "drain asked by tidectl-ana: by tidectl-ana")}


async def test_no_client_may_claim_to_be_the_planes_own_automation(service: Service) -> None:
    """The ``service`` front end is the policy loop's, inside the control plane: a client
    that says it is one is turned away at hello (else it could act as the policy)."""
    with pytest.raises(ServiceUnavailable, match="front end must be one of cli, console"):
        async with RemotePlane(service.path, Frontend.SERVICE):
            pass
    async with RemotePlane(service.path, Frontend.CLI) as cli:
        assert cli.user is not None
