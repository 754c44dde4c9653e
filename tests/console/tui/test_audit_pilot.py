"""The console's audit view (``a``), driven by Pilot against a real control plane: a real store
and audit log, the sim scheduler. A drain asked with ``d`` and a burst the plane denies show
as their records, the denied one styled apart; the filter narrows the table; an action taken
while the view shows appears at its next refresh; Escape clears the filter, then goes back."""

from __future__ import annotations

import contextlib
import getpass
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from rich.table import Table
from textual.widgets import Input, Static

from tests.console.lifecycle.conftest import clock, world
from tests.console.lifecycle.world import POOL, World
from tests.console.tui.helpers import fed_fleet, screen_text, wait_for
from tidectl.console.audit import AuditLog
from tidectl.console.config.loader import parse_config
from tidectl.console.control.caller import Caller, Frontend
from tidectl.console.control.errors import Refused
from tidectl.console.control.plane import ControlPlane
from tidectl.console.tui.action_dialogs import DrainDialog
from tidectl.console.tui.app import ConsoleApp
from tidectl.console.tui.audit_screen import AuditScreen
from tidectl.console.tui.fleet_screen import FleetScreen
from tidectl.console.view.audit import DENIED_STYLE

__all__ = ["clock", "world"]  # fixtures

SIZE = (190, 40)
ME = getpass.getuser()  # who the console acts as
CONFIG = (
    '[cluster]\nname = "c1"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
    '[[nodes]]\nnames = "gpu[001-002]"\n'
)


def rows(app: ConsoleApp, *words: str) -> list[str]:
    """The screen's lines that hold every one of ``words`` as a whole word."""
    return [
        line
        for line in screen_text(app).splitlines()
        if all(re.search(rf"(?<!\S){re.escape(w)}(?!\S)", line) for w in words)
    ]


@pytest.fixture
async def plane(world: World, tmp_path: Path) -> AsyncIterator[ControlPlane]:
    (tmp_path / "known_hosts").write_text("")
    (tmp_path / "cluster.toml").write_text(CONFIG)  # its owner is admin (no [roles])
    config = replace(parse_config(CONFIG, tmp_path / "cluster.toml"), pools=(POOL,))
    await world.scheduler.add_node("gpu001", 8)
    with AuditLog(tmp_path / "a.jsonl") as log:
        yield ControlPlane(
            config, world.store, world.engine(), scheduler=world.scheduler, audit=log
        )


async def test_the_audit_view_lists_what_was_asked_and_filters_it(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AuditScreen, "REFRESH_S", 1.0)
    fleet, _, _ = fed_fleet(2)

    @contextlib.asynccontextmanager
    async def source() -> AsyncIterator[ControlPlane]:
        yield plane

    app = ConsoleApp(fleet, "c1", source=source)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.plane is not None, 10, "the control plane")
        # d on gpu001 (the first row), through the dialog: the console's own request.
        app.fleet_screen.table.focus()
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DrainDialog), 5, "the drain dialog")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(plane.nodes()) == 1, 10, "the drain")
        # A burst by someone with no role: denied, and recorded.
        with pytest.raises(Refused):
            await plane.burst(Caller("eve", Frontend.NOTEBOOK), "gpu", count=1)

        await pilot.press("a")
        assert isinstance(app.screen, AuditScreen)
        screen = app.screen
        await wait_for(pilot, lambda: bool(rows(app, "eve")), 5, "the denied burst's record")
        assert rows(app, "1", ME, "console", "drain", "gpu001", "allowed", "started")
        assert rows(app, "2", ME, "console", "drain", "gpu001", "allowed", "outcome")
        (denied,) = rows(app, "3", "eve", "notebook", "burst", "gpu", "denied")
        assert "eve is in no [roles] entry" in denied or "no [roles] table" in denied
        assert "✔ chain: ok, 3 records verify (the last: seq 3" in screen_text(app)
        assert screen.page is not None
        assert [r.decision for r in screen.page.records] == ["allowed", "allowed", "denied"]
        table = screen.query_one("#audit", Static).content  # the Rich table it shows
        assert isinstance(table, Table)
        assert [row.style for row in table.rows] == [DENIED_STYLE, "", ""]  # newest first

        # The filter: words narrow what was read; actor: asks the plane for less.
        await pilot.press("slash", *"eve")
        await wait_for(pilot, lambda: not rows(app, "drain"), 5, "the drain filtered out")
        assert rows(app, "3", "eve", "burst", "denied")
        assert "3 records; 1 match the filter's words" in screen_text(app)
        box = screen.query_one("#filter", Input)  # typed once above; set from here on
        box.value = "eve !eve"
        await wait_for(pilot, lambda: not rows(app, "eve", "burst"), 5, "nothing left")
        box.value = "actor:eve"
        await wait_for(
            pilot,
            lambda: screen.page is not None and screen.page.matched == 1,
            5,
            "the plane asked for eve's records",
        )
        assert rows(app, "eve", "burst") and not rows(app, "drain")

        # Escape clears the filter; an action taken while the view shows appears.
        await pilot.press("escape")
        reads = screen.reads
        await plane.resume(Caller(ME, Frontend.CLI), ["gpu001"])
        await wait_for(pilot, lambda: bool(rows(app, "resume", "cli")), 5, "the resume")
        assert screen.reads > reads and rows(app, "drain", "started")
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen)
