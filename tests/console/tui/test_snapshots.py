"""Snapshots of the console's screens, compared as SVG (Textual pinned in the test extra).

The fleet is simulated nodes on a fake clock, so every figure, sparkline and age on screen
is the same on every run. Update on purpose with ``pytest --snapshot-update`` and review the
SVGs in the diff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from textual.pilot import Pilot

from tests.console.test_health import Record
from tests.console.tui.helpers import fed_fleet
from tidectl.console.tui.app import ConsoleApp

SIZE = (150, 30)
Snap = Callable[..., bool]


def _faulty_app() -> ConsoleApp:
    fleet, feeds, clock = fed_fleet(10, ticks=8)

    def xid(record: Record) -> None:
        record["probes"]["gpu"]["gpus"][1]["xid"] = [{"code": 79, "ts": record["ts"]}]

    def port_down(record: Record) -> None:
        port = record["probes"]["ib"]["ports"][0]
        port["state"], port["state_name"] = 1, "DOWN"
        port["phys_state"], port["phys_state_name"] = 3, "Disabled"

    clock.advance(1.0)
    feeds[2].send(xid)
    feeds[6].send(port_down)
    fleet.flush()
    return ConsoleApp(fleet, "snapshot")


def _cursor_blink_off(app: Any) -> None:
    for widget in app.screen.query("Input"):
        widget.cursor_blink = False


def test_fleet_table(snap_compare: Snap) -> None:
    assert snap_compare(_faulty_app(), terminal_size=SIZE)


def test_fleet_table_folded(snap_compare: Snap) -> None:
    assert snap_compare(_faulty_app(), terminal_size=SIZE, press=["f"])


def test_filter_line(snap_compare: Snap) -> None:
    async def type_filter(pilot: Pilot[object]) -> None:
        await pilot.press("slash", *"health:crit")
        _cursor_blink_off(pilot.app)

    assert snap_compare(_faulty_app(), terminal_size=SIZE, run_before=type_filter)


def test_node_detail(snap_compare: Snap) -> None:
    assert snap_compare(_faulty_app(), terminal_size=(150, 60), press=["enter"])


def test_help(snap_compare: Snap) -> None:
    assert snap_compare(_faulty_app(), terminal_size=(150, 45), press=["question_mark"])


def test_fleet_table_without_colour(snap_compare: Snap, monkeypatch: pytest.MonkeyPatch) -> None:
    # NO_COLOR: Textual renders in monochrome; health and links must still read as words.
    monkeypatch.setenv("NO_COLOR", "1")
    app = _faulty_app()
    assert app.no_color
    assert snap_compare(app, terminal_size=SIZE)
