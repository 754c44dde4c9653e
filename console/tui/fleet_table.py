"""The fleet table: one line per node (or folded node set), drawn with Textual's line API.

A ``DataTable`` re-measures and re-renders rows it does not show; at a thousand nodes that
are all updated every second it cannot keep a tick under 30 ms. This widget owns no cells:
the headless ``FleetTableModel`` holds rows and lays out lines, and ``render_line`` formats
only the lines on screen. The cursor follows its line's key (a node name, a node set) so
it stays on the same node while rows re-sort under it.
"""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tidectl.console.fleet import Fleet
from tidectl.console.view import cells, render
from tidectl.console.view.rows import row_age
from tidectl.console.view.table import FleetTableModel, Line

_CURSOR = Style(reverse=True)
_CURSOR_UNFOCUSED = Style(underline=True)


class FleetTable(ScrollView, can_focus=True):
    """Scrollable lines of ``FleetTableModel``; Enter posts ``LineChosen``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False, id="table.up"),
        Binding("down,j", "cursor(1)", "Down", show=False, id="table.down"),
        Binding("pageup,ctrl+b", "page(-1)", "Page up", show=False, id="table.page_up"),
        Binding("pagedown,ctrl+f", "page(1)", "Page down", show=False, id="table.page_down"),
        Binding("home,g", "edge(0)", "First", show=False, id="table.first"),
        Binding("end,G", "edge(1)", "Last", show=False, id="table.last"),
        Binding("enter", "choose", "Open", id="table.open"),
    ]

    class LineChosen(Message):
        """The operator pressed Enter on a line."""

        def __init__(self, line: Line) -> None:
            super().__init__()
            self.line = line

    cursor = reactive(0, layout=False, repaint=True, init=False)

    def __init__(self, model: FleetTableModel, fleet: Fleet, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model
        self.fleet = fleet
        self._lines: list[Line] = []
        self._index: dict[str, int] = {}  # node name → its line
        self._layout_version = -1
        self._cursor_key: str | None = None
        self._name_w = render.name_width([])
        #: line key → (what it was drawn from, the strip): a line whose row, cursor, width and
        #: age did not change is not formatted again.
        self._strips: dict[str, tuple[tuple[object, ...], Strip]] = {}

    # -- data --------------------------------------------------------------------------------

    @property
    def lines(self) -> list[Line]:
        return self._lines

    @property
    def current(self) -> Line | None:
        if 0 <= self.cursor < len(self._lines):
            return self._lines[self.cursor]
        return None

    def apply(self, changed: frozenset[str] | set[str]) -> None:
        """Show the model after ``changed`` nodes were updated in it: lay out again when the
        lines moved, else repaint only the changed nodes' lines that are on screen."""
        lines = self.model.lines()
        if lines is not self._lines or self.model.layout_version != self._layout_version:
            self.relayout()
            return
        top = int(self.scroll_y)
        bottom = top + self.scrollable_content_region.height
        for name in changed:
            index = self._index.get(name)
            if index is not None and top <= index < bottom:
                self.refresh_line(index)

    def relayout(self) -> None:
        """Take the model's lines again (after an update, a sort, a filter) and repaint."""
        self._lines = self.model.lines()
        self._layout_version = self.model.layout_version
        self._index = {}
        for i, line in enumerate(self._lines):
            for row in line.rows:
                self._index[row.name] = i
        labels = [line.label for line in self._lines if line.kind != "group"]
        extra = 6 if self.model.folded else 0  # " (960)" after a folded set
        self._name_w = render.name_width(labels) + extra
        width = self._name_w + sum(c.width + len(render.GAP) for c in render.COLUMNS) + 40
        self.virtual_size = Size(width, len(self._lines))
        index = 0
        if self._cursor_key is not None:
            for i, line in enumerate(self._lines):
                if line.key == self._cursor_key:
                    index = i
                    break
            else:
                index = min(self.cursor, max(len(self._lines) - 1, 0))
        self.set_reactive(FleetTable.cursor, index)
        self._remember_cursor()
        self.refresh()

    @property
    def name_w(self) -> int:
        return self._name_w

    def _remember_cursor(self) -> None:
        line = self.current
        self._cursor_key = line.key if line is not None else None

    # -- drawing -----------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.scrollable_content_region.width
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        line = self._lines[index]
        now = self.fleet.now()
        cursor = index == self.cursor
        rows = tuple(self.model.row(row.name) for row in line.rows)
        ages = tuple(cells.age(row_age(row, now)) for row in rows[:1])
        drawn_from = (rows, ages, cursor, cursor and self.has_focus, width, scroll_x, self._name_w)
        cached = self._strips.get(line.key)
        if cached is not None and cached[0] == drawn_from:
            return cached[1]
        if line.kind == "group":
            text = render.group_text(line)
        elif line.kind == "fold":
            text = render.fold_text(line, self._name_w, now, rows)
        else:
            node = self.fleet.nodes.get(line.key)
            spark = node.history.node_series("gpu_util_pct") if node is not None else []
            text = render.node_text(rows[0], self._name_w, now, spark[-render.SPARK_WIDTH :])
        if cursor:
            text.stylize(_CURSOR if self.has_focus else _CURSOR_UNFOCUSED)
        # One Strip per line: each Strip carries caches of its own, and building four (render,
        # simplify, style, crop) per line per repaint showed up in profiles at 1,000 nodes.
        if scroll_x:
            strip = Strip(list(text.render(self.app.console))).crop_extend(
                scroll_x, scroll_x + width, self.rich_style
            )
        else:
            text.truncate(width, pad=True)
            strip = Strip(list(text.render(self.app.console)), width)
        if len(self._strips) > 4 * max(self.scrollable_content_region.height, 50):
            self._strips.clear()  # lines scrolled away long ago
        self._strips[line.key] = (drawn_from, strip)
        return strip

    # -- cursor ------------------------------------------------------------------------------

    def watch_cursor(self, _old: int, new: int) -> None:
        self._remember_cursor()
        self._scroll_to_cursor(new)

    def _scroll_to_cursor(self, index: int) -> None:
        height = self.scrollable_content_region.height
        top = int(self.scroll_y)
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif height and index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False)

    def _move(self, index: int) -> None:
        if self._lines:
            self.cursor = max(0, min(index, len(self._lines) - 1))

    def action_cursor(self, step: int) -> None:
        self._move(self.cursor + step)

    def action_page(self, step: int) -> None:
        self._move(self.cursor + step * max(self.scrollable_content_region.height - 1, 1))

    def action_edge(self, end: int) -> None:
        self._move(len(self._lines) - 1 if end else 0)

    def action_choose(self) -> None:
        line = self.current
        if line is not None:
            self.post_message(self.LineChosen(line))

    def on_click(self, event: events.Click) -> None:
        self._move(int(self.scroll_y) + event.y)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
