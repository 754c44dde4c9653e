"""One node in full (Enter on a row): its lifecycle, its scheduler state and jobs, GPUs, IB
ports, filesystems, NICs, findings, events."""

from __future__ import annotations

import time
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static

from tidectl.console.fleet import Fleet
from tidectl.console.tui.messages import InjectFault
from tidectl.console.view.detail import node_detail


class NodeScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,backspace", "app.pop_screen", "Back", id="node.back"),
        Binding("i", "inject", "Fault", id="node.inject"),
        Binding("c", "clear_faults", "Clear faults", id="node.clear_faults"),
    ]

    def __init__(self, fleet: Fleet, name: str) -> None:
        super().__init__()
        self.fleet = fleet
        self.node_name = name
        self.dirty = True

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.show()

    def on_screen_resume(self) -> None:
        self.show()

    def note_changes(self, names: frozenset[str]) -> None:
        if self.node_name in names:
            self.dirty = True
            if self.is_current:
                self.show()

    def tick(self) -> None:
        if self.is_current:
            self.show()

    def show(self) -> None:
        node = self.fleet.nodes.get(self.node_name)
        detail = self.query_one("#detail", Static)
        if node is None:
            detail.update(f"{self.node_name} is no longer part of the fleet.")
        else:
            # The console's last read of the store (at most a second old), when a plane runs.
            feed = getattr(self.app, "life", None)
            record = feed.records.get(self.node_name) if feed is not None else None
            scheduler = feed.scheduler if feed is not None else None
            detail.update(node_detail(node, self.fleet.now(), record, time.time(), scheduler))
        self.dirty = False

    def action_inject(self) -> None:
        self.post_message(InjectFault(self.node_name, ""))

    def action_clear_faults(self) -> None:
        self.post_message(InjectFault(self.node_name, None))
