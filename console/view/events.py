"""The fleet's events, newest first: every node's health and link transitions in one list,
and, with a control plane, its lifecycle moves and reconcile reports (``LifeEvent``)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from rich.table import Table
from rich.text import Text

from tidectl.console.fleet import Fleet, NodeEvent
from tidectl.console.lifecycle.states import State
from tidectl.console.model import LinkState, Severity
from tidectl.console.view import cells
from tidectl.console.view.badges import HEALTH_STYLE, LIFE_STYLE, LINK_STYLE

#: Events the view lists at most: the newest; older ones stay in each node's detail.
MAX_SHOWN = 500


@dataclass(frozen=True, slots=True)
class LifeEvent:
    """A lifecycle move (``life``: ``before`` → ``after``, why and who in ``detail``) or a
    reconcile report (``report``: the sentence in ``detail``), at the fleet's clock."""

    at: float
    kind: Literal["life", "report"]
    before: str
    after: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class FleetEvent:
    node: str
    event: NodeEvent | LifeEvent

    @property
    def text(self) -> str:
        e = self.event
        return f"{self.node} {e.kind} {e.before} {e.after} {e.detail or ''}".lower()


def fleet_events(
    fleet: Fleet, text: str = "", limit: int = MAX_SHOWN, extra: Iterable[FleetEvent] = ()
) -> list[FleetEvent]:
    """Up to ``limit`` events, newest first, whose node, kind, states or detail hold every
    word of ``text`` (case-insensitive). ``extra``: events from outside the fleet (lifecycle
    moves), at the fleet's clock, merged in."""
    words = text.lower().split()
    if limit <= 0:
        return []  # the loop below takes one event before it checks the limit

    def node_events(name: str, events: Iterator[NodeEvent]) -> Iterator[FleetEvent]:
        return (FleetEvent(name, event) for event in events)

    def newest_first(event: FleetEvent) -> float:
        return -event.event.at

    # Each node's deque is newest first: a k-way merge reads only what it returns.
    merged = heapq.merge(
        *(node_events(name, iter(node.events)) for name, node in fleet.nodes.items()),
        iter(sorted(extra, key=newest_first)),
        key=newest_first,
    )
    out: list[FleetEvent] = []
    for fleet_event in merged:
        if words and not all(word in fleet_event.text for word in words):
            continue
        out.append(fleet_event)
        if len(out) >= limit:
            break
    return out


def _state_style(kind: str, word: str) -> str:
    if kind == "life":
        try:
            return LIFE_STYLE[State(word)]
        except ValueError:
            return ""  # "new": the row of a node entering the store
    if kind == "health":
        for level in Severity:
            if level.word == word:
                return HEALTH_STYLE[level]
        return ""
    try:
        return LINK_STYLE[LinkState(word)]
    except ValueError:
        return ""


def events_table(events: list[FleetEvent], now: float, *, show_node: bool = True) -> Table:
    table = Table(expand=True, box=None, header_style="bold", pad_edge=False)
    table.add_column("AGO", justify="right", width=5, no_wrap=True)
    if show_node:
        table.add_column("NODE", no_wrap=True)
    table.add_column("WHAT", no_wrap=True)
    table.add_column("CHANGE", no_wrap=True)
    table.add_column("WHY", ratio=1, overflow="fold")
    for fleet_event in events:
        e = fleet_event.event
        change = Text()
        if e.before or e.after:  # a report has no states, only its sentence
            change.append(e.before, style=_state_style(e.kind, e.before))
            change.append(" → ")
            change.append(e.after, style=_state_style(e.kind, e.after))
        cells_ = [cells.age(now - e.at)]
        if show_node:
            cells_.append(fleet_event.node)
        table.add_row(*cells_, e.kind, change, e.detail or "")
    return table
