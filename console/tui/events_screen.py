"""Every node's health, link and lifecycle transitions, newest first, with a filter."""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from tidectl.console.fleet import Fleet
from tidectl.console.view.events import events_table, fleet_events
from tidectl.console.view.life import LifeFeed


class EventsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="events.back"),
        Binding("slash", "filter", "Filter", id="events.filter", priority=True),
    ]

    def __init__(self, fleet: Fleet, life: LifeFeed | None = None) -> None:
        super().__init__()
        self.fleet = fleet
        self.life = life if life is not None else LifeFeed()
        self.dirty = True

    def compose(self) -> ComposeResult:
        yield Input(
            placeholder="filter events: node, health, link, life, a state, code or words",
            id="filter",
        )
        with VerticalScroll():
            yield Static(id="events")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).focus()
        self.show()

    def on_screen_resume(self) -> None:
        self.show()

    def note_changes(self, names: frozenset[str]) -> None:
        self.dirty = True

    def tick(self) -> None:
        # At most once a second, and only while showing: merging a thousand nodes' events
        # is cheap, but not free.
        if self.is_current:
            self.show()

    def show(self) -> None:
        text = self.query_one("#filter", Input).value
        events = fleet_events(self.fleet, text, extra=self.life.events)
        self.query_one("#events", Static).update(events_table(events, self.fleet.now()))
        self.dirty = False

    @on(Input.Changed, "#filter")
    def _filter(self) -> None:
        self.show()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if self.focused is box:
            box.insert_text_at_cursor("/")
        else:
            self.set_focus(box)  # at once: see FleetScreen.action_filter

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if self.focused is box and box.value:
            box.value = ""
            return
        self.app.pop_screen()
