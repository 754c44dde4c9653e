"""The cost report over the service's socket: ``RemotePlane`` and ``AttachedPlane`` get the
report the plane itself makes — the same pools, bursts, nodes and budgets, as the same types —
the socket peer's role is checked like any read, and a window that cannot mean anything is a
bad request."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.console.lifecycle.world import POOL, S, World
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import Budget, BudgetPeriod, Role, RolesSettings
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.control.roles import Roles
from tidectl.console.cost.budgets import BudgetStatus
from tidectl.console.cost.report import BurstCost, CostReport
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
    base = parse_config(text, folder / "cluster.toml")  # its owner (this user) is admin
    config = replace(base, pools=(POOL,), budgets=(Budget(900.0, BudgetPeriod.MONTH, "gpu"),))
    running = ControlPlane(
        config,
        world.store,
        world.engine(),
        fleet=Fleet(config.nodes, config.health),
        scheduler=world.scheduler,
        interval_s=0.05,
    )
    await running.start()
    yield running
    await running.aclose()


@pytest.fixture
async def serving(plane: ControlPlane, folder: Path) -> AsyncIterator[Service]:
    running = Service(plane, folder / "s.sock")
    await running.start()
    yield running
    await running.aclose()


def _same(remote: CostReport, local: CostReport) -> None:
    """Two reports made a moment apart: the same things, figures that moved little."""
    assert (remote.cluster, remote.since, remote.day_start) == (
        local.cluster,
        local.since,
        local.day_start,
    )
    assert [p.pool for p in remote.pools] == [p.pool for p in local.pools]
    assert [(b.intent_id, b.nodes, b.running) for b in remote.bursts] == [
        (b.intent_id, b.nodes, b.running) for b in local.bursts
    ]
    assert [n.node for n in remote.nodes] == [n.node for n in local.nodes]
    assert remote.burn_per_hour == local.burn_per_hour
    assert remote.spend == pytest.approx(local.spend, abs=0.05)


async def test_a_remote_report_is_the_planes(
    serving: Service, plane: ControlPlane, world: World
) -> None:
    async with RemotePlane(serving.path, Frontend.CLI) as remote:
        result = await remote.burst(ANY, "gpu", count=1)
        await remote.wait(result.nodes, {S.ACTIVE}, timeout_s=20)
        report = await remote.cost_report(ANY)
        local = await plane.cost_report(Caller(ME, Frontend.CLI))
    _same(report, local)
    (burst,) = report.bursts
    assert isinstance(burst, BurstCost) and burst.intent_id == result.intent_id
    assert burst.burn_per_hour == 24.0 and burst.asked_by == ME
    (status,) = report.budgets
    assert isinstance(status, BudgetStatus)
    assert (status.budget.pool, status.budget.period) == ("gpu", BudgetPeriod.MONTH)
    assert report.nodes[0].state is S.ACTIVE


async def test_an_attached_console_reads_the_services_costs(
    serving: Service, plane: ControlPlane
) -> None:
    fleet = Fleet(plane.config.nodes, plane.config.health)
    async with AttachedPlane(serving.path, fleet) as attached:
        since = plane.engine.now() - 3600
        report = await attached.cost_report(ANY, since=since)
    assert report.since == since and report.cluster == "c1"
    assert [p.pool for p in report.pools] == ["gpu"]


async def test_the_peer_needs_a_role_to_read_the_costs(
    serving: Service, plane: ControlPlane, folder: Path
) -> None:
    plane.roles = Roles(RolesSettings({Role.VIEWER: ("someone-else",)}), folder / "cluster.toml")
    async with RemotePlane(serving.path, Frontend.CLI) as remote:
        with pytest.raises(Refused, match=f"{ME} may not read the cluster"):
            await remote.cost_report(ANY)


async def test_a_window_that_cannot_mean_anything_is_a_bad_request(serving: Service) -> None:
    reader, writer = await asyncio.open_unix_connection(str(serving.path))
    for params in ({"since": "yesterday"}, {"since": True}):
        writer.write(json.dumps({"id": 1, "method": "cost", "params": params}).encode() + b"\n")
    await writer.drain()
    answers = [json.loads(await reader.readline()) for _ in range(2)]
    writer.close()
    assert [a["error"]["kind"] for a in answers] == ["bad-request"] * 2
    assert "since must be a time in epoch seconds" in answers[0]["error"]["message"]
