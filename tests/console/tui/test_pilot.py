"""The console driven by Textual's Pilot: navigation, filter, sort, folding, detail, events.

A fleet of simulated nodes fed real wire records on a fake clock, so what the table shows is
known; the last tests run the real thing: a simulated cluster over real SSH, the real
collector, and a fault injected through the console's own menu.
"""

from __future__ import annotations

from pathlib import Path

from textual.message import Message
from textual.notifications import Notify
from textual.widgets import Input

from tests.console.test_health import Record
from tests.console.tui.helpers import fed_fleet, screen_text, wait_for
from tidectl.console.config.loader import load_config
from tidectl.console.model import LinkState, Severity
from tidectl.console.sim.injector import SimFaults
from tidectl.console.sim.server import SimOptions, SimServer
from tidectl.console.tui.app import ConsoleApp, console_app
from tidectl.console.tui.dialogs import FaultMenu, HelpScreen
from tidectl.console.tui.events_screen import EventsScreen
from tidectl.console.tui.fleet_screen import FleetScreen
from tidectl.console.tui.node_screen import NodeScreen

SIZE = (170, 50)


def _xid(record: Record) -> None:
    gpu = record["probes"]["gpu"]["gpus"][2]
    gpu["xid"] = [{"code": 79, "ts": record["ts"]}]


async def test_rows_cursor_detail_and_back() -> None:
    fleet, _, _ = fed_fleet(6)
    app = ConsoleApp(fleet, "testcluster")
    async with app.run_test(size=SIZE) as pilot:
        table = app.fleet_screen.table
        assert [line.key for line in table.lines] == [f"gpu00{i}" for i in range(1, 7)]
        text = screen_text(app)
        assert "tidectl · testcluster" in text
        assert "6 nodes" in text and "6 streaming" in text
        assert text.count("✔ ok") == 6

        await pilot.press("down", "down")
        assert table.current is not None and table.current.key == "gpu003"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, NodeScreen) and app.screen.node_name == "gpu003"
        detail = screen_text(app)
        for section in ("gpu003", "GPUs", "InfiniBand", "Filesystems", "Network"):
            assert section in detail
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.fleet_screen
        assert table.current is not None and table.current.key == "gpu003"

        await pilot.press("G")
        assert table.current is not None and table.current.key == "gpu006"
        await pilot.press("g")
        assert table.current is not None and table.current.key == "gpu001"


async def test_the_cursor_stays_on_its_node_when_rows_resort() -> None:
    fleet, feeds, clock = fed_fleet(5)
    app = ConsoleApp(fleet, "c")
    async with app.run_test(size=SIZE) as pilot:
        table = app.fleet_screen.table
        await pilot.press("down", "down", "down")  # gpu004
        clock.advance(1.0)
        feeds[3].send(_xid)  # gpu004 turns critical and sorts to the top
        fleet.flush()
        await wait_for(pilot, lambda: table.lines[0].key == "gpu004", 5, "gpu004 to sort first")
        assert table.current is not None and table.current.key == "gpu004"
        assert table.cursor == 0


async def test_filter_narrows_and_a_bad_filter_says_why() -> None:
    fleet, feeds, clock = fed_fleet(8)
    clock.advance(1.0)
    feeds[4].send(_xid)
    fleet.flush()
    app = ConsoleApp(fleet, "c")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.fleet_screen
        await pilot.press("slash")
        await pilot.press(*"health:crit")
        await pilot.pause()
        assert [line.key for line in screen.table.lines] == ["gpu005"]
        await pilot.press("enter")  # keeps the filter, back to the table
        assert screen.table.has_focus
        assert "1 of 8 nodes" in screen_text(app)

        await pilot.press("slash", "backspace", *"purple")  # health:crip... → health:crpurple
        await pilot.pause()
        text = screen_text(app)
        assert "no health starts with" in text
        assert [line.key for line in screen.table.lines] == ["gpu005"]  # the last good one

        await pilot.press("escape")  # clears the filter
        await pilot.pause()
        assert len(screen.table.lines) == 8

        await pilot.press("slash", *"gpu[001-003]", "enter")
        await pilot.pause()
        assert [line.key for line in screen.table.lines] == ["gpu001", "gpu002", "gpu003"]

        # A "/" typed inside the filter is text (a mount path), not "open the filter".
        await pilot.press("escape", "slash", "slash", *"home")
        assert screen.query_one("#filter", Input).value == "/home"


async def test_sort_reverse_fold_and_group() -> None:
    fleet, feeds, clock = fed_fleet(12)
    clock.advance(1.0)
    feeds[6].send(_xid)
    fleet.flush()
    app = ConsoleApp(fleet, "c")
    async with app.run_test(size=SIZE) as pilot:
        screen = app.fleet_screen
        model, table = screen.model, screen.table
        assert model.sort == "health" and table.lines[0].key == "gpu007"

        await pilot.press("s")  # the next sort order
        assert model.sort == "findings"
        await pilot.press("R")
        assert model.reverse
        assert "sort findings reversed" in screen_text(app)
        await pilot.press("R")

        await pilot.press("f")
        await pilot.pause()
        kinds = [line.kind for line in table.lines]
        assert kinds.count("node") == 1  # gpu007, the exception
        folds = [line for line in table.lines if line.kind == "fold"]
        assert sum(len(line.rows) for line in folds) == 11
        assert "gpu007" not in {row.name for line in folds for row in line.rows}
        assert folds[0].label in screen_text(app)

        await pilot.press("p")  # group by site
        await pilot.pause()
        assert table.lines[0].kind == "group" and "site dc1: 12 nodes" in table.lines[0].label

        # Enter on a folded set narrows the table to its nodes, unfolded.
        await pilot.press("p", "p")  # back to no groups
        fold_index = next(i for i, line in enumerate(table.lines) if line.kind == "fold")
        table.cursor = fold_index
        await pilot.press("enter")
        await pilot.pause()
        assert not model.folded
        assert all(line.kind == "node" for line in table.lines)
        assert len(table.lines) == len(folds[0].rows) if len(folds) == 1 else len(table.lines) > 1


async def test_events_view_lists_transitions_newest_first() -> None:
    fleet, feeds, clock = fed_fleet(4)
    clock.advance(5.0)
    feeds[1].send(_xid)
    fleet.on_link("gpu004", LinkState.UNREACHABLE, "connection refused")
    fleet.flush()
    app = ConsoleApp(fleet, "c")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, EventsScreen)
        text = screen_text(app)
        lines = [line for line in text.splitlines() if "→" in line]
        assert "gpu004" in lines[0] or "gpu002" in lines[0]
        assert any("gpu002" in line and "critical" in line for line in lines)
        assert any("unreachable" in line and "connection refused" in line for line in lines)
        await pilot.press("slash", *"gpu004")
        await pilot.pause()
        filtered = [line for line in screen_text(app).splitlines() if "→" in line]
        assert filtered and all("gpu004" in line for line in filtered)
        await pilot.press("escape", "escape")
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)


async def test_help_lists_every_binding_with_its_id() -> None:
    fleet, _, _ = fed_fleet(2)
    app = ConsoleApp(fleet, "c", keymap={"fleet.fold": "z"})
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for binding_id in ("app.quit", "fleet.filter", "fleet.sort", "table.open", "node.back"):
            assert binding_id in text
        await pilot.press("escape")
        await pilot.pause()
        # The keymap moved fold from f to z.
        await pilot.press("z")
        assert app.fleet_screen.model.folded
        await pilot.press("f")
        assert app.fleet_screen.model.folded


async def test_command_palette_sorts_and_filters() -> None:
    fleet, _, _ = fed_fleet(3)
    app = ConsoleApp(fleet, "c")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("colon")
        await pilot.pause()
        await pilot.press(*"sort by temp")
        await wait_for(pilot, lambda: "sort by temp" in screen_text(app), 5, "the command")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.fleet_screen.model.sort == "temp", 5, "sort by temp")


async def test_quit_exits_cleanly() -> None:
    fleet, _, _ = fed_fleet(1)
    app = ConsoleApp(fleet, "c")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_faults_outside_the_demo_are_refused_with_a_sentence() -> None:
    fleet, _, _ = fed_fleet(2)
    app = ConsoleApp(fleet, "c")
    said: list[str] = []

    def hook(message: Message) -> None:
        if isinstance(message, Notify):
            said.append(message.notification.message)

    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await pilot.press("i")
        await wait_for(pilot, lambda: bool(said), 5, "a notification")
        assert "simulated cluster only" in said[0]
        assert not isinstance(app.screen, FaultMenu)


async def test_a_fault_injected_from_the_console_is_critical_within_two_ticks(
    tmp_path: Path,
) -> None:
    options = SimOptions(out=tmp_path / "sim", nodes=4, base_port=0, seed=3)
    async with SimServer(options):
        config = load_config(tmp_path / "sim" / "cluster.toml")
        app = console_app(config, faults=SimFaults(tmp_path / "sim"))
        async with app.run_test(size=SIZE) as pilot:
            fleet = app.fleet
            await wait_for(
                pilot,
                lambda: all(
                    n.link is LinkState.STREAMING and n.sample is not None
                    for n in fleet.nodes.values()
                ),
                30,
                "every node streaming",
            )
            screen = app.fleet_screen
            await pilot.press("slash", *"sim0002", "enter")
            await pilot.pause()
            assert screen.table.current is not None and screen.table.current.key == "sim0002"
            await pilot.press("i")
            await wait_for(pilot, lambda: isinstance(app.screen, FaultMenu), 5, "the fault menu")
            menu = app.screen
            assert isinstance(menu, FaultMenu)
            assert menu.choices[0].fault.startswith("xid ")
            node = fleet.nodes["sim0002"]
            critical_at: list[int] = []

            def note(changed: frozenset[str]) -> None:
                # The seq of the first sample the fleet judged critical (flushes come every
                # 0.1 s, well inside a tick, so this is that sample's own seq).
                if not critical_at and node.health is Severity.CRITICAL and node.sample:
                    critical_at.append(node.sample.seq)

            fleet.subscribe(note)
            faults_file = tmp_path / "sim" / "faults.txt"
            await pilot.press("enter")  # the first choice: XID 79
            await wait_for(
                pilot,
                lambda: faults_file.exists() and "xid" in faults_file.read_text(),
                10,
                "the fault written",
            )
            assert node.sample is not None
            written_at = node.sample.seq
            await wait_for(
                pilot,
                lambda: screen.model.rows["sim0002"].health is Severity.CRITICAL,
                10,
                "sim0002 critical in the table",
            )
            assert critical_at, "the fleet never flushed sim0002 as critical"
            assert critical_at[0] - written_at <= 2, f"{critical_at[0] - written_at} ticks"
            assert "gpu.xid" in screen.model.rows["sim0002"].codes
            assert "✖ crit" in screen_text(app)
            await pilot.press("e")
            await pilot.pause()
            assert any(
                "sim0002" in line and "critical" in line for line in screen_text(app).splitlines()
            )


async def test_new_figures_reach_the_screen_without_a_new_layout() -> None:
    fleet, feeds, clock = fed_fleet(3)
    app = ConsoleApp(fleet, "c")

    def util(record: Record) -> None:
        for gpu in record["probes"]["gpu"]["gpus"]:
            gpu["util_pct"] = 61

    async with app.run_test(size=SIZE) as pilot:
        version = app.fleet_screen.model.layout_version
        clock.advance(1.0)
        feeds[1].send(util)
        fleet.flush()
        await wait_for(pilot, lambda: " 61%" in screen_text(app), 5, "gpu002's new utilisation")
        assert app.fleet_screen.model.layout_version == version


async def test_a_tick_during_quit_does_not_crash_the_exit() -> None:
    # The 1 Hz timer can fire while the app tears its screens down; it once raised NoMatches
    # for the header and turned a clean quit into a traceback.
    fleet, _, _ = fed_fleet(2)
    app = ConsoleApp(fleet, "c")
    async with app.run_test(size=SIZE) as pilot:
        await app.fleet_screen.query_one("#summary").remove()
        await pilot.pause()
        app._tick()  # must not raise
        assert app.is_running
