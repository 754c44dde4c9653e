"""Modal dialogs: help with every binding, and the fault menu of a simulated node."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.table import Table
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tidectl.console.view.faults import FaultChoice


def bindings_table(
    scopes: Sequence[tuple[str, Sequence[BindingType]]], keymap: Mapping[str, str]
) -> Table:
    """Every binding with an id, by where it works; keys as remapped by ``keymap``."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("WHERE", no_wrap=True)
    table.add_column("KEYS", no_wrap=True)
    table.add_column("DOES")
    table.add_column("ID (for [console.keymap])", no_wrap=True, style="dim")
    for scope, bindings in scopes:
        for binding in bindings:
            if not isinstance(binding, Binding) or binding.id is None:
                continue
            keys = keymap.get(binding.id, binding.key)
            table.add_row(scope, keys.replace("slash", "/"), binding.description, binding.id)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "close", "Close", id="help.close"),
    ]

    def __init__(self, table: Table) -> None:
        super().__init__()
        self.table = table

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            yield Static("tidectl console: keys  (Esc closes)", classes="title")
            with VerticalScroll():
                yield Static(self.table)

    def action_close(self) -> None:
        self.dismiss(None)


class FaultMenu(ModalScreen[FaultChoice | None]):
    """Pick a fault to inject into ``node``; dismisses with the choice, or None."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="faults.cancel"),
    ]

    def __init__(self, node: str, choices: Sequence[FaultChoice]) -> None:
        super().__init__()
        self.node = node
        self.choices = list(choices)

    def compose(self) -> ComposeResult:
        with Vertical(id="faults"):
            yield Static(
                f"Inject a fault into {self.node}  (Enter picks, Esc cancels)", classes="title"
            )
            yield OptionList(
                *(Option(choice.label, id=str(i)) for i, choice in enumerate(self.choices))
            )

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.choices[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
