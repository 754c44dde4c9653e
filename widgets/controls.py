"""The panel's ipywidgets, laid out once: the only module that imports ipywidgets.

Imported by the panel when it is first displayed (or ``ClusterPanel.widget`` is read), never
at ``import tidectl.widgets``: without ipywidgets the panel shows its static HTML summary.
The widgets hold no logic; ``panel.py`` sets their values and handles their events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from tidectl.console.view.html import PRE_STYLE

__all__ = ["TABLE_CLASS", "PanelWidgets", "build_widgets"]

#: The table's CSS class: a ``<select>`` whose lines keep the console's columns.
TABLE_CLASS = "tidectl-table"
_CSS = (
    "<style>"
    f".{TABLE_CLASS} select {{ font-family: ui-monospace, Menlo, 'DejaVu Sans Mono', "
    "monospace; font-size: 12px; white-space: pre; }"
    ".tidectl-message-error { color: #b00020; } .tidectl-message-warning { color: #8a6d00; }"
    "</style>"
)


@dataclass(slots=True)
class PanelWidgets:
    """Every widget of one panel; ``root`` is what a notebook displays."""

    root: Any
    title: Any
    close: Any
    summary: Any
    fold: Any
    heading: Any
    table: Any
    detail: Any
    pool: Any
    count: Any
    burst: Any
    burst_words: Any
    drain: Any
    drain_words: Any
    adaptive: Any
    min_nodes: Any
    max_nodes: Any
    adaptive_words: Any
    message: Any

    def close_all(self) -> None:
        """Close this panel's widgets (and theirs only): their views leave the notebook."""
        _close(self.root)  # every named widget is in it, with the boxes and the style sheet


def _close(widget: Any) -> None:
    for child in getattr(widget, "children", ()):
        _close(child)
    widget.close()


def build_widgets() -> PanelWidgets:
    """The widgets, empty; the panel fills them in."""
    full = w.Layout(width="100%")
    title = w.HTML(value="")
    close = w.Button(description="Close", tooltip="Stop this panel's tasks", icon="times")
    summary = w.HTML(value="", layout=full)
    fold = w.ToggleButton(value=True, description="Fold", tooltip="Fold nodes into node sets")
    heading = w.HTML(value="", layout=full)
    table = w.Select(options=[], rows=12, layout=full)
    table.add_class(TABLE_CLASS)
    detail = w.HTML(value="", layout=full)
    pool = w.Dropdown(options=[], description="Pool", layout=w.Layout(width="220px"))
    count = w.BoundedIntText(
        value=1, min=1, max=1, description="Count", layout=w.Layout(width="160px")
    )
    burst = w.Button(
        description="Burst", button_style="primary", disabled=True, layout=w.Layout(width="auto")
    )
    burst_words = w.HTML(value="")
    drain = w.Button(
        description="Drain selected",
        button_style="warning",
        disabled=True,
        layout=w.Layout(width="auto"),
    )
    drain_words = w.HTML(value="", layout=full)
    adaptive = w.ToggleButton(
        value=False,
        description="Adaptive",
        tooltip="Burst on queue pressure between min and max nodes",
    )
    min_nodes = w.BoundedIntText(
        value=0, min=0, max=10_000, description="Min", layout=w.Layout(width="140px")
    )
    max_nodes = w.BoundedIntText(
        value=1, min=1, max=10_000, description="Max", layout=w.Layout(width="140px")
    )
    adaptive_words = w.HTML(value="")
    message = w.HTML(value="", layout=full)
    root = w.VBox(
        [
            w.HTML(value=_CSS),
            w.HBox([title, close], layout=w.Layout(justify_content="space-between")),
            summary,
            w.HBox([fold]),
            heading,
            table,
            detail,
            w.HBox([pool, count, burst, burst_words]),
            w.HBox([drain]),
            drain_words,
            w.HBox([adaptive, min_nodes, max_nodes, adaptive_words]),
            message,
        ],
        layout=full,
    )
    root.add_class("tidectl-panel")
    return PanelWidgets(
        root=root,
        title=title,
        close=close,
        summary=summary,
        fold=fold,
        heading=heading,
        table=table,
        detail=detail,
        pool=pool,
        count=count,
        burst=burst,
        burst_words=burst_words,
        drain=drain,
        drain_words=drain_words,
        adaptive=adaptive,
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        adaptive_words=adaptive_words,
        message=message,
    )


def pre(text: str) -> str:
    """``text`` as a monospace block for an ``HTML`` widget (the caller escapes it)."""
    return f'<pre style="{PRE_STYLE}">{text}</pre>'
