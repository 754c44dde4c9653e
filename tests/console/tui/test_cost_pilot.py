"""The console's costs, driven by Pilot against a real control plane over a real store: the
header shows spend today next to the burn, marked when a budget is past its ``warn_at``; ``$``
opens the costs view with the per-pool and per-burst tables and the burn over the day as a
sparkline; the burst dialog says when the budget would be reached with what it adds."""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import Sparkline

from tests.console.cost.helpers import HOUR, burst, launch
from tests.console.lifecycle.conftest import clock, world
from tests.console.lifecycle.world import POOL, World
from tests.console.tui.helpers import fed_fleet, screen_text, wait_for
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import Budget, BudgetPeriod
from tidectl.console.control.plane import ControlPlane
from tidectl.console.cost.budgets import period_end, period_start
from tidectl.console.tui.action_dialogs import BurstDialog
from tidectl.console.tui.app import ConsoleApp
from tidectl.console.tui.cost_screen import CostScreen, SpendReader
from tidectl.console.tui.fleet_screen import FleetScreen

__all__ = ["clock", "world"]  # fixtures

SIZE = (190, 45)
CONFIG = (
    '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
    '[[nodes]]\nnames = "gpu[001-002]"\n'
)
PRICE = 24.0  # the sim cloud's sim.gpu8, the pool's first type


@pytest.fixture
async def plane(world: World, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    """A burst node billing $24/h for the last two hours, and a daily budget $10 above
    today's spend that warns from the first cent."""
    now = world.clock()
    intent = burst(world.store, "gpu", now - 2 * HOUR)
    launch(world.store, "gpu-burst-1", intent, PRICE, now - 2 * HOUR, pool="gpu")
    today = world.store.spend(since=period_start(BudgetPeriod.DAY, now), until=now)
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "cluster.toml").write_text(CONFIG)  # its owner is admin (no [roles])
    base = parse_config(CONFIG, tmp_path / "cluster.toml")
    budget = Budget(round(today + 10.0, 2), BudgetPeriod.DAY, warn_at=1e-9)
    config = replace(base, pools=(POOL,), budgets=(budget,))
    yield ControlPlane(config, world.store, world.engine(), scheduler=world.scheduler)


def _app(plane: ControlPlane) -> ConsoleApp:
    fleet, _, _ = fed_fleet(2)

    @contextlib.asynccontextmanager
    async def source() -> AsyncIterator[ControlPlane]:
        yield plane  # its loops are not started: nothing reconciles the made-up node away

    return ConsoleApp(fleet, "c1", source=source)


async def test_the_header_and_the_costs_view(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SpendReader, "REFRESH_S", 0.2)
    app = _app(plane)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "(▲ budget" in screen_text(app), 10, "the spend today")
        (header,) = [line for line in screen_text(app).splitlines() if "burn $24.00/h" in line]
        assert re.search(r"burn \$24\.00/h · today \$[\d,]+\.\d\d \(▲ budget \d+%\)", header)

        await pilot.press("dollar_sign")
        assert isinstance(app.screen, CostScreen)
        screen = app.screen
        await wait_for(pilot, lambda: screen.report is not None, 5, "the cost report")
        text = screen_text(app)
        assert "burn now $24.00/h · 1 burst(s) running" in text
        pool_line = next(
            line for line in text.splitlines() if re.search(r"\bgpu\b.*\$24\.00", line)
        )
        assert pool_line.split("│")[1].strip() == "gpu"  # the pool's row, in the pools' table
        assert screen.report is not None
        (b,) = screen.report.bursts
        assert any(b.intent_id[:8] in line and "running" in line for line in text.splitlines())
        burn = screen.query_one("#burn", Sparkline).data
        assert burn and max(burn) == pytest.approx(PRICE)  # $24/h while it billed
        assert burn[-1] == pytest.approx(PRICE)

        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)


async def test_the_burst_dialog_projects_when_the_budget_is_reached(plane: ControlPlane) -> None:
    app = _app(plane)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.plane is not None, 10, "the control plane")
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BurstDialog), 5, "the dialog")
        await wait_for(pilot, lambda: "projected:" in screen_text(app), 5, "the projection")
        dialog = app.screen
        assert isinstance(dialog, BurstDialog) and dialog.budgets is not None
        (status,) = dialog.budgets
        # One node adds $24/h to the $24/h burning: about $10 left at $48/h.
        hours = status.remaining / (status.burn_per_hour + PRICE)
        left = (period_end(BudgetPeriod.DAY, status.now) - status.now) / 3600
        assert dialog.form is not None
        shown = dialog.form.projection
        assert shown.split(" reached")[0] in screen_text(app)  # the line wraps in the dialog
        name = f"the cluster's daily budget of ${status.budget.limit:,.2f}"
        if hours <= left:
            minutes = max(1, round(hours * 60))
            assert shown == f"projected: {name} reached in about {minutes} min (at $48.00/h)"
        else:  # the test runs in the day's last minutes
            assert shown.startswith("projected: no budget reached before its period ends")
        assert math.isclose(status.burn_per_hour, PRICE)
        await pilot.press("escape")
