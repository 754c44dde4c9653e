"""The main screen: header, the fleet table, a filter line and the key bar."""

from __future__ import annotations

import contextlib
import time
from typing import ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from tidectl.console.fleet import Fleet
from tidectl.console.tui.fleet_table import FleetTable
from tidectl.console.tui.messages import InjectFault, LifecycleAsked
from tidectl.console.view import render
from tidectl.console.view.filter import FilterError
from tidectl.console.view.header import header_text
from tidectl.console.view.life import LifeFeed
from tidectl.console.view.table import FleetTableModel, Line

#: Seconds between repaints of nodes whose figures changed (view changes repaint at once).
REPAINT_S = 0.5


class FleetScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: checked as the app takes the key, before the keys typed after it are
        # handed to the table; see action_filter.
        Binding("slash", "filter", "Filter", id="fleet.filter", priority=True),
        Binding("s", "sort", "Sort", id="fleet.sort"),
        Binding("R", "reverse", "Reverse", id="fleet.reverse"),
        Binding("f", "fold", "Fold", id="fleet.fold"),
        Binding("p", "group", "Group", id="fleet.group"),
        Binding("b", "lifecycle('burst')", "Burst", id="fleet.burst"),
        Binding("d", "lifecycle('drain')", "Drain", id="fleet.drain"),
        Binding("r", "lifecycle('resume')", "Resume", id="fleet.resume"),
        Binding("t", "lifecycle('terminate')", "Terminate", id="fleet.terminate"),
        Binding("K", "lifecycle('trust_key')", "Trust host key", id="fleet.trust_key"),
        Binding("i", "inject", "Fault", id="fleet.inject"),
        Binding("c", "clear_faults", "Clear faults", show=False, id="fleet.clear_faults"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="fleet.clear_filter"),
    ]

    def __init__(self, fleet: Fleet, cluster: str, life: LifeFeed | None = None) -> None:
        super().__init__(id="fleet-screen")
        self.fleet = fleet
        self.cluster = cluster
        self.life = life if life is not None else LifeFeed()
        self.model = FleetTableModel()
        self.pending: set[str] = set(fleet.nodes)
        #: Seconds the last apply of fleet changes took (for the console's benchmark).
        self.last_apply_s = 0.0
        self._filter_error: str | None = None
        self._apply_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        yield Static(id="heading")
        yield FleetTable(self.model, self.fleet, id="fleet")
        yield Input(
            placeholder="filter: gpu[001-004] health:crit site:x code:ib text",
            id="filter",
            select_on_focus=False,  # "/" again refines the filter; it must not wipe it
        )
        yield Static(id="status")
        yield Footer()

    @property
    def table(self) -> FleetTable:
        return self.query_one(FleetTable)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.relayout()
        self.table.focus()

    def on_screen_resume(self) -> None:
        self.relayout()

    # -- fleet changes -----------------------------------------------------------------------

    def note_changes(self, names: frozenset[str]) -> None:
        """Remember changed nodes; apply them within ``REPAINT_S`` if this screen is showing.

        Samples come once a second per node, spread over the second; repainting their lines
        ten times a second would cost the terminal and the event loop (which also reads the
        nodes and takes the keys) for nothing a person can read.
        """
        self.pending |= names
        if self.is_current and self._apply_timer is None:
            self._apply_timer = self.set_timer(REPAINT_S, self._apply_due)

    def _apply_due(self) -> None:
        self._apply_timer = None
        if self.is_current:
            with contextlib.suppress(NoMatches):  # the app is quitting: nothing to show
                self.apply_pending()

    def note_life(self, names: frozenset[str]) -> None:
        """Lifecycle states moved for ``names``: their rows (and the layout, which folds,
        sorts and filters by state) follow with the next apply."""
        self.model.set_life(self.fleet, self.life.states, names)
        self.note_changes(names & self.fleet.nodes.keys())

    def apply_pending(self) -> None:
        """Apply the nodes changed since the last call (the header follows once a second)."""
        started = time.perf_counter()
        changed = self.pending
        self.pending = set()
        self.model.update(self.fleet, changed)
        relaid = self.model.layout_version
        self.table.apply(changed)
        if self.model.layout_version != relaid:
            self._show_status()
        self.last_apply_s = time.perf_counter() - started

    def relayout(self) -> None:
        """After a change of view (sort, filter, fold, group): lay out and show it now."""
        self.model.update(self.fleet, self.pending)
        self.pending = set()
        self.table.relayout()
        self._show_header()

    def tick(self) -> None:
        """Once a second: the header's counts, figure sorts re-sorted, ages moved on."""
        if not self.is_current:
            return
        if self.model.refresh_order():
            self.table.relayout()
        self.table.refresh()
        self._show_header()

    def _show_header(self) -> None:
        summary = header_text(self.cluster, self.fleet.summary(), self.life.summary())
        self.query_one("#summary", Static).update(summary)
        self._show_status()

    def _show_status(self) -> None:
        model = self.model
        self.query_one("#heading", Static).update(
            render.heading(self.table.name_w, model.sort, model.reverse)
        )
        counts = model.counts()
        status = Text(no_wrap=True, overflow="ellipsis")
        status.append(f"{counts['shown']} of {counts['nodes']} nodes")
        status.append(f" · sort {model.sort}{' reversed' if model.reverse else ''}")
        status.append(f" · group {model.group.value}")
        if model.folded:
            status.append(" · folded")
        if not model.filter.empty:
            status.append(" · filter ")
            status.append(model.filter.text, style="bold")
        if self._filter_error:
            status.append(f" · {self._filter_error}", style="bold red")
        self.query_one("#status", Static).update(status)

    # -- actions -----------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if self.focused is box:
            box.insert_text_at_cursor("/")  # a "/" typed in the filter itself (a mount path)
            return
        box.display = True
        # Focus now, not on the next idle as Widget.focus() does: keys typed right after "/"
        # (a fast typist, a paste, tmux send-keys) must land in the box, not run as commands.
        self.set_focus(box)

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self._set_filter("")
        self.table.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(event.value)
        self.table.focus()

    def on_key(self, event: events.Key) -> None:
        # Escape inside the filter box: leave it, clearing the filter.
        if event.key == "escape" and self.focused is self.query_one("#filter", Input):
            event.stop()
            self.action_clear_filter()

    def _set_filter(self, text: str) -> None:
        try:
            self.model.set_filter(text)
        except FilterError as exc:
            self._filter_error = str(exc)
        else:
            self._filter_error = None
        self.relayout()

    def action_sort(self) -> None:
        self.model.cycle_sort()
        self.relayout()

    def sort_by(self, key: str) -> None:
        self.model.set_sort(key, self.model.reverse)
        self.relayout()

    def action_reverse(self) -> None:
        self.model.toggle_reverse()
        self.relayout()

    def action_fold(self) -> None:
        self.model.toggle_fold()
        self.relayout()

    def action_group(self) -> None:
        self.model.cycle_group()
        self.relayout()

    def _node_under_cursor(self) -> str | None:
        line = self.table.current
        if line is None or line.kind != "node":
            self.notify("Put the cursor on one node first (unfold the set with f).")
            return None
        return line.rows[0].name

    def action_inject(self) -> None:
        name = self._node_under_cursor()
        if name is not None:
            self.post_message(InjectFault(name, ""))

    def action_clear_faults(self) -> None:
        name = self._node_under_cursor()
        if name is not None:
            self.post_message(InjectFault(name, None))

    def action_lifecycle(self, action: str) -> None:
        if action == "burst":
            self.post_message(LifecycleAsked(action, None))
            return
        name = self._node_under_cursor()
        if name is not None:
            self.post_message(LifecycleAsked(action, name))

    @on(FleetTable.LineChosen)
    def _open(self, event: FleetTable.LineChosen) -> None:
        line: Line = event.line
        if line.kind == "node":
            from tidectl.console.tui.node_screen import NodeScreen

            self.app.push_screen(NodeScreen(self.fleet, line.rows[0].name))
        elif line.kind == "fold":
            # Enter on a folded set narrows the table to its nodes, unfolded.
            box = self.query_one("#filter", Input)
            box.value = line.label
            box.display = True
            self.model.folded = False
            self._set_filter(line.label)
