"""The console's views as HTML, for Jupyter: Rich renderables exported with inline styles.

The notebook panel (``tidectl.widgets``) shows the same header, node detail and cost words
as the console, rendered by the same ``view`` functions; here they become HTML fragments an
ipywidgets ``HTML`` (or a notebook's ``_repr_html_``) shows. ``summary_html`` is the static
summary a notebook shows of a ``ControlPlane``, or of the panel when ipywidgets is missing —
like Dask's cluster repr.
"""

from __future__ import annotations

import html
import io
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console, RenderableType

from tidectl.console.config.model import PoolSpec
from tidectl.console.fleet import FleetSummary
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.view.header import header_text
from tidectl.console.view.life import LifeSummary

if TYPE_CHECKING:
    from tidectl.console.control.plane import ControlPlane

__all__ = ["EMPTY_FLEET", "plane_summary_html", "rich_html", "summary_html"]

#: Monospace, so that the console's columns line up; no colours of its own (Rich's spans
#: carry them), so a dark notebook theme keeps its background.
PRE_STYLE = (
    "font-family: ui-monospace, Menlo, 'DejaVu Sans Mono', monospace; font-size: 12px; "
    "line-height: 1.35; margin: 0; white-space: pre; overflow-x: auto"
)
_FORMAT = f'<pre class="tidectl" style="{PRE_STYLE}">{{code}}</pre>'
#: A fleet nobody watches (a control plane without a collector): nothing to count.
EMPTY_FLEET = FleetSummary(0, {}, {}, 0, 0, None, {})


def rich_html(renderable: RenderableType, *, width: int = 160) -> str:
    """``renderable`` as a ``<pre>`` of spans with inline styles (text escaped)."""
    console = Console(
        record=True,
        file=io.StringIO(),
        width=width,
        color_system="truecolor",
        force_terminal=True,
        force_jupyter=False,
    )
    console.print(renderable)
    return console.export_html(inline_styles=True, code_format=_FORMAT)


def summary_html(
    cluster: str,
    summary: FleetSummary,
    life: LifeSummary | None,
    pools: Sequence[PoolSpec] = (),
    *,
    note: str = "",
) -> str:
    """The console's header for ``cluster``, its pools, and ``note`` (why this is static)."""
    parts = [rich_html(header_text(cluster, summary, life))]
    if pools:
        rows = "".join(
            f"<tr><td>{html.escape(p.name)}</td><td>{html.escape(p.provider)}</td>"
            f"<td>{html.escape(p.region)}</td><td>{p.max_nodes}</td>"
            f"<td>{p.policy.min_nodes}</td>"
            f"<td>{'on' if p.policy.burst_on_pressure else 'off'}</td></tr>"
            for p in pools
        )
        parts.append(
            '<table class="tidectl-pools"><thead><tr><th>pool</th><th>provider</th>'
            "<th>region</th><th>max nodes</th><th>min nodes</th><th>burst on pressure</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
        )
    if note:
        parts.append(f'<p class="tidectl-note"><em>{html.escape(note)}</em></p>')
    return '<div class="tidectl-summary">' + "".join(parts) + "</div>"


def plane_summary_html(plane: ControlPlane, *, note: str = "") -> str:
    """``summary_html`` of a ``ControlPlane`` as it is now: its fleet (when it watches one),
    its cloud nodes by lifecycle state and its burn rate, read from its own store."""
    summary = plane.fleet.summary() if plane.fleet is not None else EMPTY_FLEET
    try:
        records = plane.nodes(live_only=True)
        burn = plane.burn_rate()
    except Exception as error:  # a repr must show something: say what could not be read
        records, burn = [], 0.0
        note = f"{note} The lifecycle store could not be read: {error}.".strip()
    cloud: Counter[State] = Counter(
        r.state for r in records if r.kind is NodeKind.CLOUD and r.state is not State.TERMINATED
    )
    life = LifeSummary(dict(cloud), burn)
    return summary_html(plane.config.name, summary, life, plane.pools(), note=note)
