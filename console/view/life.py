"""What the console shows of the control plane: lifecycle states by node, moves, burn rate.

A front end polls a ``LifeFeed`` once a second (``poll`` reads the plane's store at most that
often, whatever calls it) and hands the names whose state changed to the fleet table, so a
tick costs one read of the nodes and one of the new transition rows, not a row rebuild per
node. The feed reads only through what ``LifeSource`` names, the ``ControlPlane``'s reads.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.states import NodeKind, State, Transition
from tidectl.console.scheduler.base import Demand, SchedulerSnapshot
from tidectl.console.view.costs import SpendHeadline
from tidectl.console.view.events import MAX_SHOWN, FleetEvent, LifeEvent

__all__ = ["LifeFeed", "LifeSource", "LifeSummary", "life_event", "report_event"]

#: Transition rows read per page, and pages per poll: a store with a long history is caught
#: up over a few seconds rather than in one long tick.
_PAGE = 500
_PAGES_PER_POLL = 20
#: A report said again within this many seconds (a stuck node, every pass) is not repeated.
_REPORT_QUIET_S = 300.0
#: The word an events view shows before a node's first state (it entered the store).
NEW = "new"


class LifeSource(Protocol):
    """The ControlPlane's reads this view needs."""

    @property
    def reports(self) -> list[str]: ...

    @property
    def reported(self) -> int: ...

    def nodes(self, pool: str | None = None, *, live_only: bool = False) -> list[NodeRecord]: ...

    def transitions(self, after_id: int = 0, limit: int = 500) -> list[tuple[int, Transition]]: ...

    def burn_rate(self, pool: str | None = None) -> float: ...

    def scheduler_snapshot(self) -> SchedulerSnapshot | None: ...


@dataclass(frozen=True, slots=True)
class LifeSummary:
    """For a header: cloud nodes by lifecycle state (terminated ones left out), and what they
    cost an hour now."""

    cloud: Mapping[State, int]
    burn_rate: float
    #: Jobs waiting in the scheduler's queue (what a burst would serve); None: no scheduler.
    pending: Demand | None = None
    #: Spent today and the worst budget, from the last cost report (None: not read yet).
    spend: SpendHeadline | None = None

    @property
    def cloud_nodes(self) -> int:
        return sum(self.cloud.values())


def life_event(move: Transition, offset: float) -> FleetEvent:
    """A recorded move as an event; ``offset`` turns its wall-clock time into the fleet's."""
    before = NEW if move.before is None else move.before.value
    detail = f"{move.reason} ({move.actor})" if move.actor else move.reason
    return FleetEvent(
        move.node, LifeEvent(move.at + offset, "life", before, move.after.value, detail)
    )


def report_event(sentence: str, at: float) -> FleetEvent:
    """A reconcile report (``node: sentence``, or a sentence about the whole pass)."""
    node, sep, rest = sentence.partition(": ")
    if not sep or " " in node:
        node, rest = "", sentence
    return FleetEvent(node, LifeEvent(at, "report", "", "", rest))


class LifeFeed:
    """The lifecycle as the console last read it. Empty, and ``summary()`` None, until a
    control plane is attached."""

    def __init__(
        self,
        *,
        min_interval_s: float = 1.0,
        keep: int = MAX_SHOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_interval_s = min_interval_s
        self._clock = clock
        self._keep = keep
        self.source: LifeSource | None = None
        self.records: dict[str, NodeRecord] = {}
        #: Each node's state, for the fleet table.
        self.states: dict[str, State] = {}
        #: Lifecycle moves and reports, newest first.
        self.events: deque[FleetEvent] = deque(maxlen=keep)
        self.burn_rate = 0.0
        #: The scheduler's nodes and jobs, as the plane last read them (None: no scheduler).
        self.scheduler: SchedulerSnapshot | None = None
        #: Spent today and the worst budget: the front end reads the cost report now and
        #: then (a slower read than this feed's) and sets it.
        self.spend: SpendHeadline | None = None
        self._after_id = 0
        self._reports_seen = 0
        self._said: dict[str, float] = {}
        self._polled_at = -math.inf

    @property
    def attached(self) -> bool:
        return self.source is not None

    def attach(self, source: LifeSource) -> None:
        """Read from ``source`` from the next ``poll`` on (its history too)."""
        self.source = source
        self.events.clear()
        self._after_id = 0
        self._reports_seen = 0
        self._said.clear()
        self._polled_at = -math.inf

    def detach(self) -> frozenset[str]:
        """Stop reading (the plane stopped); returns the nodes that had a state, now none."""
        self.source = None
        gone = frozenset(self.states)
        self.records.clear()
        self.states.clear()
        self.burn_rate = 0.0
        self.scheduler = None
        self.spend = None
        return gone

    def record(self, name: str) -> NodeRecord | None:
        return self.records.get(name)

    def poll(self, *, fleet_now: float, wall_now: float, force: bool = False) -> frozenset[str]:
        """Read the plane again unless it was read under ``min_interval_s`` ago (``force``:
        after an action, to show its effect now). Returns the nodes whose state changed
        (appeared, moved, or left the store). ``fleet_now`` and ``wall_now`` are the same
        instant on the fleet's clock and the wall clock (transitions carry the latter)."""
        source = self.source
        if source is None:
            return frozenset()
        started = self._clock()
        if not force and started - self._polled_at < self.min_interval_s:
            return frozenset()
        self._polled_at = started
        changed = self._read_nodes(source)
        self._read_moves(source, fleet_now - wall_now)
        self._read_reports(source, fleet_now)
        self.burn_rate = source.burn_rate()
        return changed | self._read_scheduler(source)

    def summary(self) -> LifeSummary | None:
        if self.source is None:
            return None
        cloud: Counter[State] = Counter(
            record.state
            for record in self.records.values()
            if record.kind is NodeKind.CLOUD and record.state is not State.TERMINATED
        )
        pending = self.scheduler.demand if self.scheduler is not None else None
        return LifeSummary(dict(cloud), self.burn_rate, pending, self.spend)

    def _read_nodes(self, source: LifeSource) -> frozenset[str]:
        # Terminated nodes have left the fleet, and a long-lived store holds many of them.
        records = {record.name: record for record in source.nodes(live_only=True)}
        states = {name: record.state for name, record in records.items()}
        old = self.states
        changed = {name for name, state in states.items() if old.get(name) is not state}
        changed.update(name for name in old if name not in states)
        self.records, self.states = records, states
        return frozenset(changed)

    def _read_scheduler(self, source: LifeSource) -> frozenset[str]:
        """The scheduler's view; returns the nodes whose scheduler state or jobs changed."""
        before, after = self.scheduler, source.scheduler_snapshot()
        self.scheduler = after
        if after is before or after == before:
            return frozenset()
        old = {n.name: n for n in before.nodes} if before else {}
        new = {n.name: n for n in after.nodes} if after else {}
        changed = {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}
        jobs_before = set(before.jobs) if before else set()
        jobs_after = set(after.jobs) if after else set()
        for job in jobs_before ^ jobs_after:
            changed.update(job.nodes)
        return frozenset(changed)

    def _read_moves(self, source: LifeSource, offset: float) -> None:
        for _ in range(_PAGES_PER_POLL):
            page = source.transitions(self._after_id, _PAGE)
            for row_id, move in page:
                self.events.appendleft(life_event(move, offset))
                self._after_id = row_id
            if len(page) < _PAGE:
                return

    def _read_reports(self, source: LifeSource, now: float) -> None:
        new = source.reported - self._reports_seen
        self._reports_seen = source.reported
        if new <= 0:
            return
        for sentence in source.reports[-new:]:  # the newest (all that are kept, if more)
            said = self._said.get(sentence)
            if said is not None and now - said < _REPORT_QUIET_S:
                continue
            self._said[sentence] = now
            self.events.appendleft(report_event(sentence, now))
        if len(self._said) > 4 * self._keep:
            self._said = {s: at for s, at in self._said.items() if now - at < _REPORT_QUIET_S}
