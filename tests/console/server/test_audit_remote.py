"""The audit read over the service's socket: ``RemotePlane`` and ``AttachedPlane`` get the page
the plane itself reads — the same records, as ``AuditRecord``s, and the same chain status —
filtered in the service; the socket peer's role is checked like any read, and a request that
cannot mean anything is a bad request."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.console.lifecycle.world import POOL, World
from tidectl.console.audit import AuditLog, AuditRecord
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import Role, RolesSettings
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.control.roles import Roles
from tidectl.console.fleet import Fleet
from tidectl.console.server.attach import AttachedPlane
from tidectl.console.server.client import RemotePlane
from tidectl.console.server.service import Service

ME = pwd.getpwuid(os.getuid()).pw_name
ANY = Caller("ignored", Frontend.CONSOLE)  # the service reads the user from the socket


@pytest.fixture
async def plane(world: World, folder: Path) -> AsyncIterator[ControlPlane]:
    (folder / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu[1-2]"\n'
    )
    config = replace(parse_config(text, folder / "cluster.toml"), pools=(POOL,))
    with AuditLog(folder / "audit.jsonl") as log:
        running = ControlPlane(
            config,
            world.store,
            world.engine(),
            fleet=Fleet(config.nodes, config.health),
            scheduler=world.scheduler,
            interval_s=0.05,
            audit=log,
        )
        await running.start()
        yield running
        await running.aclose()


@pytest.fixture
async def audited(plane: ControlPlane, folder: Path) -> AsyncIterator[Service]:
    running = Service(plane, folder / "s.sock")
    await running.start()
    yield running
    await running.aclose()


async def _act(remote: RemotePlane, world: World) -> None:
    """A drain that is done and a burst into no pool, through the service."""
    await world.scheduler.add_node("gpu1", 8)
    await remote.drain(ANY, ["gpu1"], reason="firmware", request_id="req-drain")
    with pytest.raises(Refused, match="no pool named 'tpu'"):
        await remote.burst(ANY, "tpu", count=1, request_id="req-burst")


async def test_a_remote_read_is_the_planes_page(
    audited: Service, plane: ControlPlane, world: World
) -> None:
    async with RemotePlane(audited.path, Frontend.NOTEBOOK) as remote:
        await _act(remote, world)
        page = await remote.audit_records(ANY)
        assert page == await plane.audit_records(Caller(ME, Frontend.CLI))
        assert all(isinstance(record, AuditRecord) for record in page.records)
        assert [(r.actor, r.frontend, r.action, r.outcome.split(":")[0]) for r in page.records] == [
            (ME, "notebook", "drain", "started"),
            (ME, "notebook", "drain", "done"),
            (ME, "notebook", "burst", "started"),
            (ME, "notebook", "burst", "refused"),
        ]
        assert page.chain is not None and page.chain.ok and page.chain.records == 4
        bursts = await remote.audit_records(ANY, action="burst", limit=1)
        assert [r.seq for r in bursts.records] == [4] and bursts.matched == 2
        assert (await remote.audit_records(ANY, actor="nobody")).matched == 0
        soon = datetime.now(UTC) + timedelta(minutes=1)
        assert (await remote.audit_records(ANY, since=soon)).matched == 0


async def test_an_attached_console_reads_the_services_log(
    audited: Service, plane: ControlPlane, world: World
) -> None:
    fleet = Fleet(plane.config.nodes, plane.config.health)
    async with AttachedPlane(audited.path, fleet) as attached:
        await _act(attached.remote, world)
        page = await attached.audit_records(ANY, action="drain")
        assert [r.request_id for r in page.records] == ["req-drain", "req-drain"]
        assert {r.frontend for r in page.records} == {"console"}


async def test_the_peer_needs_a_role_to_read_the_log(
    audited: Service, plane: ControlPlane, folder: Path
) -> None:
    plane.roles = Roles(RolesSettings({Role.VIEWER: ("someone-else",)}), folder / "cluster.toml")
    async with RemotePlane(audited.path, Frontend.CLI) as remote:
        with pytest.raises(Refused, match=f"{ME} may not read the cluster"):
            await remote.audit_records(ANY)


async def test_a_read_that_cannot_mean_anything_is_a_bad_request(audited: Service) -> None:
    reader, writer = await asyncio.open_unix_connection(str(audited.path))
    for params in ({"since": "yesterday"}, {"limit": 10**6}, {"actor": 5}):
        writer.write(json.dumps({"id": 1, "method": "audit", "params": params}).encode() + b"\n")
    await writer.drain()
    answers = [json.loads(await reader.readline()) for _ in range(3)]
    writer.close()
    assert [a["error"]["kind"] for a in answers] == ["bad-request"] * 3
    assert "since must be an ISO-8601 time" in answers[0]["error"]["message"]
    assert "limit must be 0 to 2000" in answers[1]["error"]["message"]
    assert "actor must be a string" in answers[2]["error"]["message"]
