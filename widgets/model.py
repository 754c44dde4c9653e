"""What the notebook panel shows, without ipywidgets: plain state and words, testable alone.

The panel (``panel.py``) owns the widgets and the tasks; this owns what they show, built from
the console's own view logic (``tidectl.console.view``): the header, the fleet table folded
into node sets, the node detail, the burst form's cost and the drain's jobs. Nothing here
touches a widget, an event loop or the control plane's actions; it reads the fleet and the
``LifeFeed`` the panel polls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rich.console import Group
from rich.text import Text

from tidectl.console.config.model import PoolSpec
from tidectl.console.control.errors import ControlError, Refused
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.model import Severity
from tidectl.console.nodesets import fold
from tidectl.console.scheduler.base import Job
from tidectl.console.view import render
from tidectl.console.view.actions import (
    BurstForm,
    burst_form,
    drain_heading,
    drain_refusal,
    job_line,
    live_in,
)
from tidectl.console.view.badges import HEALTH_SYMBOL, HEALTH_WORD
from tidectl.console.view.detail import lifecycle, node_detail
from tidectl.console.view.header import header_text, money_per_hour
from tidectl.console.view.html import rich_html
from tidectl.console.view.life import LifeFeed
from tidectl.console.view.table import FleetTableModel

__all__ = ["DrainWords", "PanelModel", "TableLine", "error_words", "option_label"]

#: Jobs a drain preview lists before it says how many more.
JOBS_SHOWN = 8
#: Width, in characters, of the node detail's text.
DETAIL_WIDTH = 130
#: A line of store nodes that the fleet does not hold yet (launching, booting).
COMING = "coming"
_NBSP = "\u00a0"


@dataclass(frozen=True, slots=True)
class TableLine:
    """One line of the panel's table: a node, a folded node set, a group heading, or cloud
    nodes on their way (in the store, not streaming yet)."""

    key: str
    text: str
    #: The nodes it stands for: what a drain of it drains, what its detail shows.
    nodes: tuple[str, ...] = ()
    kind: str = "node"


@dataclass(frozen=True, slots=True)
class DrainWords:
    """What the Drain control says about the selection, and whether it may be clicked."""

    text: str
    ready: bool


def option_label(text: str) -> str:
    """A table line as a ``<select>`` option: browsers collapse runs of spaces in an option,
    which would undo the columns, so they become no-break spaces."""
    return text.replace(" ", _NBSP)


def plain_label(label: str) -> str:
    return label.replace(_NBSP, " ")


def error_words(error: ControlError) -> str:
    """A refusal or failure of the control plane as the panel says it: one readable line."""
    verb = "Refused" if isinstance(error, Refused) else "Failed"
    request = f" (request {error.request_id})" if error.request_id else ""
    return f"{verb}{request}: {error}"


class PanelModel:
    """The fleet, the lifecycle feed and the table model behind one panel."""

    def __init__(
        self, fleet: Fleet, cluster: str, *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        self.fleet = fleet
        self.cluster = cluster
        self._wall = wall_clock
        self.table = FleetTableModel()
        self.table.folded = True
        #: Polled by the panel at its own pace (``refresh_s``), not throttled again here.
        self.life = LifeFeed(min_interval_s=0.0)
        self.table.load(fleet)

    # -- data --------------------------------------------------------------------------------

    def note_fleet(self, names: Iterable[str]) -> None:
        """The fleet's flush: these nodes changed (a fleet subscriber)."""
        self.table.update(self.fleet, names)

    def poll(self) -> frozenset[str]:
        """Read the control plane's lifecycle again; returns the nodes whose state moved."""
        moved = self.life.poll(fleet_now=self.fleet.now(), wall_now=self._wall(), force=True)
        if moved:
            self.table.set_life(self.fleet, self.life.states, moved)
        return moved

    def detach(self) -> None:
        """The control plane stopped: no lifecycle to show any more."""
        gone = self.life.detach()
        self.table.set_life(self.fleet, {}, gone)

    # -- the summary -------------------------------------------------------------------------

    def summary_html(self) -> str:
        """The console's header: nodes by site and link, cloud nodes by state, burn rate,
        spend today, GPUs in use, nodes by health."""
        return rich_html(header_text(self.cluster, self.fleet.summary(), self.life.summary()))

    # -- the table ---------------------------------------------------------------------------

    def lines(self) -> list[TableLine]:
        """The table's lines: the console's (folded when ``table.folded``), then cloud nodes
        the store has that the fleet does not hold yet."""
        laid = self.table.lines()
        coming = self._coming()
        labels = [line.label for line in laid if line.kind != "group"]
        labels += [label for label, _ in coming]
        extra = 6 if self.table.folded else 0  # " (960)" after a folded set
        width = render.name_width(labels) + extra
        now = self.fleet.now()
        out: list[TableLine] = []
        for line in laid:
            rows = tuple(self.table.row(row.name) for row in line.rows)
            names = tuple(row.name for row in rows)
            if line.kind == "group":
                out.append(TableLine(line.key, render.group_text(line).plain, (), "group"))
            elif line.kind == "fold":
                text = render.fold_text(line, width, now, rows).plain
                out.append(TableLine(line.key, text, names, "fold"))
            else:
                node = self.fleet.nodes.get(line.key)
                spark = node.history.node_series("gpu_util_pct") if node is not None else []
                text = render.node_text(rows[0], width, now, spark[-render.SPARK_WIDTH :]).plain
                out.append(TableLine(line.key, text, names, "node"))
        for label, records in coming:
            first = records[0]
            words = f"{first.state.value}, pool {first.pool or '-'}: not streaming yet"
            names = tuple(r.name for r in records)
            key = f"{COMING}:{first.pool}:{first.state.value}"
            text = f"{label:<{width}} {HEALTH_SYMBOL[Severity.UNKNOWN]} {words}"
            out.append(TableLine(key, text, names, COMING))
        return out

    def heading(self) -> str:
        labels = [line.label for line in self.table.lines() if line.kind != "group"]
        extra = 6 if self.table.folded else 0
        width = render.name_width(labels + [label for label, _ in self._coming()]) + extra
        return render.heading(width, self.table.sort, self.table.reverse).plain

    def _coming(self) -> list[tuple[str, list[NodeRecord]]]:
        """Cloud nodes in the store (not ended) that the fleet does not hold, folded by pool
        and state: a burst's nodes from the moment they are asked for."""
        groups: dict[tuple[str, State], list[NodeRecord]] = {}
        for record in self.life.records.values():
            if (
                record.kind is NodeKind.CLOUD
                and record.state not in (State.TERMINATED, State.FAILED)
                and record.name not in self.fleet.nodes
            ):
                groups.setdefault((record.pool or "-", record.state), []).append(record)
        return [
            (fold(r.name for r in records), records)
            for _, records in sorted(groups.items(), key=lambda item: (item[0][0], item[0][1]))
        ]

    # -- the detail --------------------------------------------------------------------------

    def detail_html(self, line: TableLine | None) -> str:
        """The selected line in full: one node's GPUs, IB ports, filesystems, NICs, findings
        and events (the console's node view); for a set, what its nodes share."""
        if line is None or line.kind == "group":
            return rich_html(
                Text(
                    "Select a node in the table to see its GPUs, InfiniBand ports, "
                    "filesystems and findings.",
                    style="dim",
                ),
                width=DETAIL_WIDTH,
            )
        if line.kind == "node":
            node = self.fleet.nodes.get(line.key)
            if node is not None:
                page = node_detail(
                    node,
                    self.fleet.now(),
                    self.life.record(node.name),
                    self._wall(),
                    self.life.scheduler,
                )
                return rich_html(page, width=DETAIL_WIDTH)
        if line.kind == COMING:
            wall = self._wall()
            records = [r for name in line.nodes if (r := self.life.record(name)) is not None]
            parts: list[Text] = [Text(f"{fold(line.nodes)}: not streaming yet", style="bold")]
            parts += [Text(f"{r.name}  ").append_text(lifecycle(r, wall)) for r in records]
            return rich_html(Group(*parts), width=DETAIL_WIDTH)
        return rich_html(self._set_detail(line), width=DETAIL_WIDTH)

    def _set_detail(self, line: TableLine) -> Text:
        rows = [self.table.row(name) for name in line.nodes if name in self.table.rows]
        text = Text(f"{fold(line.nodes)}: {len(line.nodes)} nodes", style="bold")
        if rows:
            first = rows[0]
            text.append(
                f"  {HEALTH_SYMBOL[first.health]} {HEALTH_WORD[first.health]}, "
                f"{first.link.value}, site {first.site}"
            )
            if first.codes:
                text.append(f"\nfindings: {', '.join(first.codes)}")
        text.append(
            "\nThe nodes of a folded set share their place, link, health, findings and "
            "lifecycle state. Turn Fold off to pick one node and see its GPUs, InfiniBand "
            "ports and filesystems.",
            style="dim",
        )
        return text

    # -- the actions' words ------------------------------------------------------------------

    def burst_form(
        self, pool: PoolSpec, count: int | None, price: float | None, priced: bool
    ) -> BurstForm:
        """The console's burst form for ``pool`` and ``count``: what it adds an hour, or why
        it cannot be burst (at its max_nodes, a count out of range)."""
        live = live_in(pool.name, list(self.life.records.values()))
        typed = "" if count is None else str(count)
        return burst_form(pool, typed, live=live, price=price, priced=priced)

    @staticmethod
    def burst_button(form: BurstForm, price: float | None) -> str:
        """The Burst button's words: the count and what it adds an hour, when known."""
        if form.count is None:
            return "Burst"
        if price is None:
            return f"Burst {form.count}"
        return f"Burst {form.count} (+{money_per_hour(price * form.count)})"

    def drain_words(
        self, line: TableLine | None, jobs: Sequence[Job] | None, problem: str | None
    ) -> DrainWords:
        """What a drain of the selected line would do: the jobs that finish first (``jobs``
        None: not read yet; ``problem``: why they could not be read), or why not."""
        if line is None or not line.nodes:
            return DrainWords("Select a node, or a folded set, in the table to drain it.", False)
        refusals = [
            refusal
            for name in line.nodes
            if (refusal := drain_refusal(name, self.life.record(name))) is not None
        ]
        if refusals:
            more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
            return DrainWords(refusals[0] + more, False)
        target = fold(line.nodes)
        if problem is not None:
            return DrainWords(
                f"Drain {target}: the jobs on it cannot be read ({problem}); a drain never "
                "kills a job.",
                True,
            )
        if jobs is None:
            return DrainWords(f"Drain {target}: asking the scheduler which jobs run there…", False)
        lines = [drain_heading(target, jobs)]
        now = self._wall()
        lines += [f"  {job_line(job, now)}" for job in jobs[:JOBS_SHOWN]]
        if len(jobs) > JOBS_SHOWN:
            lines.append(f"  … and {len(jobs) - JOBS_SHOWN} more")
        return DrainWords("\n".join(lines), True)

    @staticmethod
    def adaptive_words(pool: PoolSpec | None) -> str:
        """What the pool's policy does now, in the words of Dask's adaptive mode."""
        if pool is None:
            return "No pool to adapt: add a [[pools]] table to cluster.toml."
        low = pool.policy.min_nodes
        if pool.policy.burst_on_pressure:
            return (
                f"Adaptive: the policy keeps pool {pool.name} between {low} and "
                f"{pool.max_nodes} node(s): it bursts when jobs wait and drains idle nodes."
            )
        if low:
            return (
                f"Adaptive off: pool {pool.name} bursts on its own only to keep {low} node(s); "
                "idle nodes above that drain."
            )
        return f"Adaptive off: pool {pool.name} bursts only when asked; idle nodes drain."
