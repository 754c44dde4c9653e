"""``ControlPlane.cost_report`` and the usage meter its reconcile passes run, over a real store,
the sim cloud and the sim scheduler: a burst's nodes bill, the passes meter what their GPUs
report in the fleet, and the report a viewer reads holds the burst's P&L; an identity with no
role is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.console.cost.helpers import hear
from tests.console.lifecycle.world import POOL, S, World
from tests.console.test_health import FakeClock
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import Budget, BudgetPeriod
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.fleet import Fleet
from tidectl.console.thresholds import HealthThresholds

OPAL = Caller("opal", Frontend.CLI)
VIC = Caller("vic", Frontend.CONSOLE)
NOBODY = Caller("nobody", Frontend.NOTEBOOK)
ROLES = '[roles]\noperator = ["opal"]\nviewer = ["vic"]\n'


@pytest.fixture
async def plane(world: World, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    (tmp_path / "known_hosts").write_text("")
    text = (
        '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
        '[[nodes]]\nnames = "gpu[1-2]"\n' + ROLES
    )
    base = parse_config(text, tmp_path / "cluster.toml")
    config = replace(base, pools=(POOL,), budgets=(Budget(5000.0, BudgetPeriod.DAY),))
    fleet = Fleet([], HealthThresholds(), clock=FakeClock())
    yield ControlPlane(config, world.store, world.engine(), fleet=fleet, scheduler=world.scheduler)


async def test_passes_meter_a_burst_and_a_viewer_reads_its_pnl(
    plane: ControlPlane, world: World
) -> None:
    result = await plane.burst(OPAL, "gpu", count=1)
    (node,) = result.nodes
    progress = await plane.wait([node], {S.ACTIVE}, timeout_s=20)
    assert progress.states == {node: S.ACTIVE}
    assert plane.fleet is not None
    hear(plane.fleet, node, *[50.0] * 8)  # every GPU half busy
    await plane.reconcile_now()  # starts (or continues) the meter's clock
    world.clock.skipped += 20  # under the meter's 15 s: the next pass meters
    await plane.reconcile_now()
    rows = world.store.usage()
    assert {row.node for row in rows} == {node}
    metered = sum(row.up_s for row in rows)
    assert metered >= 20
    assert sum(row.gpu_s for row in rows) == pytest.approx(metered * 8 * 0.5)
    assert sum(row.idle_s for row in rows) == 0  # busy GPUs: not idle

    report = await plane.cost_report(VIC)
    (burst,) = report.bursts
    assert (burst.intent_id, burst.pool, burst.asked_by, burst.running) == (
        result.intent_id,
        "gpu",
        "opal",
        True,
    )
    assert burst.burn_per_hour == 24.0 and report.burn_per_hour == 24.0
    assert burst.spend == pytest.approx(burst.node_hours * 24.0)
    assert burst.gpu_hours_used == pytest.approx(metered * 4 / 3600)
    assert burst.gpu_hours_paid == pytest.approx(burst.node_hours * 8)
    (status,) = report.budgets
    assert status.burn_per_hour == 24.0 and status.budget.limit == 5000.0

    # Idle: no job on it (the sim scheduler has none) and every GPU under 5 %.
    hear(plane.fleet, node, *[1.0] * 8, seq=2)
    world.clock.skipped += 20
    await plane.reconcile_now()
    assert plane.meter.idle == {node}
    idle = await plane.cost_report(VIC)
    assert idle.idle_per_hour == 24.0 and idle.idle_spend > 0


async def test_a_caller_without_a_role_may_not_read_the_costs(plane: ControlPlane) -> None:
    with pytest.raises(Refused, match="nobody may not read the cluster"):
        await plane.cost_report(NOBODY)
    window = await plane.cost_report(VIC, since=plane.engine.now() - 60)
    assert window.since == pytest.approx(plane.engine.now() - 60, abs=5)
    assert (window.spend, window.bursts) == (0.0, ())
