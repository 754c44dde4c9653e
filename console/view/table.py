"""The fleet table's model: rows by node, filtered, sorted, grouped and folded into lines.

Front ends hand it the names the fleet says changed; it rebuilds those rows only
(``node_row``) and lays the lines out again on the next ``lines()`` call, so a tick costs one
row per changed node plus one sort, whatever the front end then draws. Folding turns nodes
with the same place, link, health and findings into one node-set line (``sim[0001-0960] ok``)
so a thousand nodes fit a screen and only the exceptions stand out.
"""

from __future__ import annotations

import enum
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tidectl.console.fleet import Fleet, NodeState
from tidectl.console.lifecycle.states import State
from tidectl.console.model import LinkState
from tidectl.console.nodesets import fold
from tidectl.console.view.filter import Filter, parse_filter
from tidectl.console.view.rows import NodeRow, node_row


class GroupBy(enum.StrEnum):
    NONE = "none"
    SITE = "site"
    POOL = "pool"


@functools.lru_cache(maxsize=65536)
def natural(name: str) -> tuple[Any, ...]:
    """``gpu9`` before ``gpu10``: digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _missing_last(value: float | None) -> float:
    # Descending sorts negate: a node with no figure sinks either way.
    return -math.inf if value is None or math.isnan(value) else value


#: Links that need an operator first, then links on their way up, healthy streaming last.
#: (Sorting by the state's word put "unreachable" below "streaming".)
_LINK_RANK = {
    state: rank
    for rank, state in enumerate(
        (
            LinkState.HOST_KEY_MISMATCH,
            LinkState.AUTH_FAILED,
            LinkState.AGENT_FAILED,
            LinkState.UNREACHABLE,
            LinkState.STALE,
            LinkState.CONNECTING,
            LinkState.DEPLOYING,
            LinkState.CONNECTED,
            LinkState.STOPPED,
            LinkState.STREAMING,
        )
    )
}

#: Lifecycle states that need an operator first, then nodes on the move, then nodes at
#: rest; nodes the store does not know last.
_LIFE_RANK: dict[State | None, int] = {
    state: rank
    for rank, state in enumerate(
        (
            State.FAILED,
            State.TERMINATING,
            State.REQUESTED,
            State.PROVISIONING,
            State.BOOTSTRAPPING,
            State.JOINING,
            State.DRAINING,
            State.DRAINED,
            State.ACTIVE,
            State.TERMINATED,
            None,
        )
    )
}

#: Sort orders by column key: each puts the most interesting row first (worst health,
#: busiest, hottest, fullest, oldest sample), ties broken by name.
SORTS: dict[str, Callable[[NodeRow], tuple[Any, ...]]] = {
    "name": lambda r: (natural(r.name),),
    "health": lambda r: (-r.health, natural(r.name)),
    "findings": lambda r: (-len(r.codes), r.codes, natural(r.name)),
    "link": lambda r: (_LINK_RANK[r.link], natural(r.name)),
    "life": lambda r: (_LIFE_RANK[r.life], natural(r.name)),
    "site": lambda r: (r.site, r.pool, natural(r.name)),
    "gpus": lambda r: (-_missing_last(r.gpus), natural(r.name)),
    "util": lambda r: (-_missing_last(r.util_pct), natural(r.name)),
    "mem": lambda r: (-_missing_last(r.mem_pct), natural(r.name)),
    "temp": lambda r: (-_missing_last(r.hottest_c), natural(r.name)),
    "ib": lambda r: (-_missing_last(r.ib_errors_per_min), natural(r.name)),
    "fs": lambda r: (-_missing_last(r.fs_pct), natural(r.name)),
    "net": lambda r: (-_missing_last(r.net_bytes_s), natural(r.name)),
    "age": lambda r: (r.sample_at, natural(r.name)),
}
SORT_ORDER = tuple(SORTS)


@dataclass(frozen=True, slots=True)
class Line:
    """One line of the table: a group heading, one node, or a folded node set."""

    kind: Literal["group", "node", "fold"]
    key: str  # stable identity for a cursor: "group:site:dc1", a node name, "fold:<set>"
    label: str
    rows: tuple[NodeRow, ...] = ()


#: Sorts whose order only moves when a node's link, health or findings move; the others
#: (figures: utilisation, temperature, ...) change order every tick, and re-sort at most
#: when the front end calls ``refresh_order`` (once a second): rows that jump ten times a
#: second cannot be read anyway.
STATE_SORTS = frozenset({"name", "health", "findings", "link", "life", "site"})


class FleetTableModel:
    """Rows by node name, and the lines the table shows.

    ``update`` is cheap: it marks rows stale and lays the lines out again only when a node's
    link, health or findings changed (what folds, groups and the state sorts depend on). A
    stale row is rebuilt when read (``row``, ``rows``), so at a thousand nodes a tick costs a
    rebuild only for the rows on screen.
    """

    def __init__(self) -> None:
        self._rows: dict[str, NodeRow] = {}
        self._stale: dict[str, NodeState] = {}
        self._state: dict[str, tuple[object, ...]] = {}
        self._life: dict[str, State] = {}
        self.filter: Filter = parse_filter("")
        self.sort = "health"
        self.reverse = False
        self.group = GroupBy.NONE
        self.folded = False
        self._lines: list[Line] | None = None
        #: Counts layouts, so a front end can tell when lines moved (and not only figures).
        self.layout_version = 0

    # -- data --------------------------------------------------------------------------------

    def update(self, fleet: Fleet, names: Iterable[str]) -> None:
        """Note that ``names`` changed in ``fleet``; nodes it no longer holds leave."""
        nodes = fleet.nodes
        for name in names:
            node = nodes.get(name)
            if node is None:
                if self._state.pop(name, None) is not None:
                    self._lines = None
                self._rows.pop(name, None)
                self._stale.pop(name, None)
                continue
            self._stale[name] = node
            state = (
                node.link,
                node.health,
                tuple(f.code for f in node.findings),
                self._life.get(name),
            )
            if self._state.get(name) != state:
                self._state[name] = state
                self._lines = None

    def load(self, fleet: Fleet) -> None:
        self._rows.clear()
        self._stale.clear()
        self._state.clear()
        self.update(fleet, fleet.nodes)

    def set_life(self, fleet: Fleet, states: Mapping[str, State], changed: Iterable[str]) -> None:
        """Note the lifecycle states of ``changed`` nodes (``states`` holds every node the
        store knows; a name missing from it has none). Nodes not in ``fleet`` are kept for
        when they join it, and cost nothing until then."""
        names = list(changed)
        for name in names:
            life = states.get(name)
            if life is None:
                self._life.pop(name, None)
            else:
                self._life[name] = life
        self.update(fleet, (name for name in names if name in fleet.nodes))

    def life(self, name: str) -> State | None:
        return self._life.get(name)

    def row(self, name: str) -> NodeRow:
        node = self._stale.pop(name, None)
        if node is not None:
            self._rows[name] = node_row(node, self._life.get(name))
        return self._rows[name]

    @property
    def rows(self) -> Mapping[str, NodeRow]:
        """Every row, up to date."""
        for name in list(self._stale):
            self.row(name)
        return self._rows

    def refresh_order(self) -> bool:
        """Lay out again if figures may have moved the order; returns whether it will."""
        if self.sort in STATE_SORTS and self.filter.empty:
            return False
        self._lines = None
        return True

    # -- view settings -----------------------------------------------------------------------

    def set_filter(self, text: str) -> None:
        """Filter by ``text``; raises FilterError (and keeps the old filter) when it is bad."""
        self.filter = parse_filter(text)
        self._lines = None

    def set_sort(self, key: str, reverse: bool = False) -> None:
        if key not in SORTS:
            raise ValueError(f"no column {key!r} to sort by; columns: {', '.join(SORTS)}")
        self.sort, self.reverse = key, reverse
        self._lines = None

    def cycle_sort(self) -> str:
        self.set_sort(SORT_ORDER[(SORT_ORDER.index(self.sort) + 1) % len(SORT_ORDER)])
        return self.sort

    def toggle_reverse(self) -> None:
        self.reverse = not self.reverse
        self._lines = None

    def cycle_group(self) -> GroupBy:
        order = list(GroupBy)
        self.group = order[(order.index(self.group) + 1) % len(order)]
        self._lines = None
        return self.group

    def toggle_fold(self) -> bool:
        self.folded = not self.folded
        self._lines = None
        return self.folded

    # -- layout ------------------------------------------------------------------------------

    @property
    def visible(self) -> list[NodeRow]:
        """The rows the filter lets through, sorted."""
        rows = [row for row in self.rows.values() if self.filter.matches(row)]
        rows.sort(key=SORTS[self.sort], reverse=self.reverse)
        return rows

    def lines(self) -> list[Line]:
        """The lines to show; each line's ``rows`` are as of the layout (read figures with
        ``row``)."""
        if self._lines is None:
            self._lines = self._layout()
            self.layout_version += 1
        return self._lines

    def _layout(self) -> list[Line]:
        rows = self.visible
        if self.group is GroupBy.NONE:
            return self._body(rows)
        groups: dict[str, list[NodeRow]] = {}
        for row in rows:
            groups.setdefault(row.site if self.group is GroupBy.SITE else row.pool, []).append(row)
        lines: list[Line] = []
        for name in sorted(groups):
            members = groups[name]
            heading = f"{self.group.value} {name}: {len(members)} nodes"
            lines.append(Line("group", f"group:{self.group.value}:{name}", heading))
            lines.extend(self._body(members))
        return lines

    def _body(self, rows: list[NodeRow]) -> list[Line]:
        if not self.folded:
            return [Line("node", row.name, row.name, (row,)) for row in rows]
        members: dict[tuple[object, ...], list[NodeRow]] = {}
        for row in rows:  # in sort order: each fold sits where its first member sorts
            members.setdefault(row.fold_key, []).append(row)
        lines = []
        for group in members.values():
            if len(group) == 1:
                lines.append(Line("node", group[0].name, group[0].name, (group[0],)))
            else:
                label = fold(row.name for row in group)
                lines.append(Line("fold", f"fold:{label}", label, tuple(group)))
        return lines

    def counts(self) -> Mapping[str, int]:
        """Nodes held and nodes shown (for a "42 of 1000" line)."""
        shown = sum(len(line.rows) for line in self.lines())
        return {"nodes": len(self._state), "shown": shown}
