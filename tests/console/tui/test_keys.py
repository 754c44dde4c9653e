"""Binding ids: the core's list matches the console's bindings; cluster.toml remaps them."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.binding import Binding

from tests.console.test_config import HEAD, folder, load, refuse
from tidectl.console.tui.action_dialogs import ActionDialog, ConfirmDialog
from tidectl.console.tui.app import ConsoleApp, console_app
from tidectl.console.tui.audit_screen import AuditScreen
from tidectl.console.tui.cost_screen import CostScreen
from tidectl.console.tui.dialogs import FaultMenu, HelpScreen
from tidectl.console.tui.events_screen import EventsScreen
from tidectl.console.tui.fleet_screen import FleetScreen
from tidectl.console.tui.fleet_table import FleetTable
from tidectl.console.tui.node_screen import NodeScreen
from tidectl.console.view.keys import BINDING_IDS

__all__ = ["folder"]  # the fixture, imported for its use below

NODES = '[[nodes]]\nnames = "gpu[1-2]"\n'


def test_the_cores_binding_ids_are_exactly_the_consoles() -> None:
    declared = [
        binding.id
        for owner in (
            ConsoleApp,
            FleetScreen,
            FleetTable,
            NodeScreen,
            EventsScreen,
            AuditScreen,
            CostScreen,
            HelpScreen,
            FaultMenu,
            ActionDialog,
            ConfirmDialog,
        )
        for binding in owner.BINDINGS
        if isinstance(binding, Binding)
    ]
    assert None not in declared, "every binding needs an id, or a keymap cannot move it"
    assert len(declared) == len(set(declared)), "binding ids must be unique"
    assert sorted(declared) == sorted(BINDING_IDS)  # type: ignore[type-var]


def test_a_keymap_loads_and_reaches_the_app(folder: Path) -> None:
    config = load(
        folder,
        HEAD + NODES + '[console]\nkeymap = { "fleet.fold" = "z", "app.quit" = "q, ctrl+q" }\n',
    )
    assert config.console.keymap == {"fleet.fold": "z", "app.quit": "q,ctrl+q"}
    assert console_app(config).keymap == {"fleet.fold": "z", "app.quit": "q,ctrl+q"}
    assert load(folder, HEAD + NODES).console.keymap == {}


@pytest.mark.parametrize(
    ("table", "line", "words"),
    [
        (
            '[console]\nkeymap = { "fleet.flod" = "z" }\n',
            9,
            ['"fleet.flod"', 'did you mean "fleet.fold"'],
        ),
        (
            '[console]\nkeymap = { "nothing" = "z" }\n',
            9,
            ['no key binding has the id "nothing"', "press ?"],
        ),
        ('[console]\nkeymap = { "fleet.fold" = 3 }\n', 9, ["keymap.fleet.fold is 3", "like"]),
        ('[console]\nkeymap = { "fleet.fold" = "z z" }\n', 9, ["key names as a string"]),
        ("[console]\nkeymaps = {}\n", 9, ['unknown key "keymaps"', 'did you mean "keymap"']),
        ("[consol]\n", 8, ["unknown table [consol]", "did you mean [console]"]),
    ],
)
def test_bad_keymaps_are_refused_with_line_and_sentence(
    folder: Path, table: str, line: int, words: list[str]
) -> None:
    error = refuse(folder, HEAD + NODES + table)
    assert error.line == line
    for word in words:
        assert word in str(error)


def test_docs_console_md_lists_every_binding_id() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "console.md").read_text()
    missing = [binding_id for binding_id in BINDING_IDS if f"`{binding_id}`" not in doc]
    assert not missing, f"docs/console.md does not list {missing}"
