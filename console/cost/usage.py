"""The usage meter: what each billing cloud node does with the hours it is paid for.

The ledger says what a node costs (its price from start to stop); the meter says what it was
used for. On the control plane's reconcile passes — at most every ``min_interval_s`` — it
looks at every cloud node that bills and adds, for the time since the last metering:

* the seconds metered;
* the GPU-seconds used: each GPU's utilisation fraction in the node's latest fresh sample,
  times the seconds (a node the console does not hear from adds none: unknown is not use);
* the seconds, and the dollars, it sat **idle**: up in the scheduler (active, draining or
  drained), no job on it per the scheduler's last snapshot, and every GPU below its pool's
  ``[pools.policy] idle_gpu_util_below`` — as the policy loop decides idleness, so a node not
  heard from is not idle.

Each pass is one small transaction (a row per node and hour, ``Store.add_usage``), so a crash
loses at most the interval since the last one. A gap longer than ``max_gap_s`` (the control
plane was stopped) is not metered: readings from now say nothing about then.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from tidectl.console.config.model import PoolPolicy, PoolSpec
from tidectl.console.fleet import Fleet
from tidectl.console.health import can_hear
from tidectl.console.lifecycle.records import NodeRecord, UsageRow
from tidectl.console.lifecycle.states import NodeKind, State, bills
from tidectl.console.lifecycle.store import Store
from tidectl.console.scheduler.base import JobState, SchedulerSnapshot

__all__ = [
    "IDLE_STATES",
    "MAX_GAP_S",
    "MIN_INTERVAL_S",
    "Reading",
    "UsageMeter",
    "gpu_utils",
    "hour_of",
    "is_idle",
    "usage_rows",
]

#: The least time between two meterings (reconcile passes come every few seconds).
MIN_INTERVAL_S: Final = 15.0
#: A longer gap since the last metering is not metered (the control plane was stopped).
MAX_GAP_S: Final = 300.0
#: States in which a cloud node is up in the scheduler, so an empty one is idle capacity.
#: Booting and ending nodes bill too, but are not capacity anyone could use.
IDLE_STATES: Final = frozenset({State.ACTIVE, State.DRAINING, State.DRAINED})
_HOUR: Final = 3600.0
#: The threshold of a node whose pool is no longer configured.
_DEFAULT_IDLE_PCT: Final = PoolPolicy().idle_gpu_util_below


@dataclass(frozen=True, slots=True)
class Reading:
    """One node as a metering pass saw it."""

    #: Jobs on it per the scheduler; None without a scheduler (the GPUs alone decide).
    jobs: int | None
    #: Each GPU's utilisation (percent) in its latest fresh sample; None: not heard from.
    gpus: tuple[float, ...] | None


def gpu_utils(fleet: Fleet | None, name: str) -> tuple[float, ...] | None:
    """The utilisation of each GPU of ``name`` that reported one, from its latest sample if
    the console hears the node now; None when it does not (or it is not in the fleet)."""
    node = fleet.nodes.get(name) if fleet is not None else None
    if fleet is None or node is None or not can_hear(node, fleet.thresholds, fleet.now()):
        return None
    assert node.sample is not None  # can_hear says so
    section = node.sample.probes.gpu
    if section is None:
        return None
    utils = tuple(float(g.util_pct) for g in section.gpus if g.util_pct is not None)
    return utils or None


def is_idle(state: State, reading: Reading, threshold_pct: float) -> bool:
    """Up in the scheduler, no job on it, and every GPU heard from below ``threshold_pct``."""
    if state not in IDLE_STATES or not reading.gpus:
        return False
    if reading.jobs:
        return False
    return all(util < threshold_pct for util in reading.gpus)


def hour_of(at: float) -> float:
    """The start of the UTC hour ``at`` falls in (epoch seconds: UTC hours are whole)."""
    return math.floor(at / _HOUR) * _HOUR


def usage_rows(
    record: NodeRecord, reading: Reading, *, idle: bool, start: float, end: float
) -> list[UsageRow]:
    """The usage of ``record`` from ``start`` to ``end``, split at UTC hours."""
    price = record.price_per_hour or 0.0
    used = sum(util / 100.0 for util in reading.gpus) if reading.gpus else 0.0
    rows = []
    at = start
    while at < end:
        hour = hour_of(at)
        piece_end = min(end, hour + _HOUR)
        seconds = piece_end - at
        idle_s = seconds if idle else 0.0
        rows.append(
            UsageRow(
                node=record.name,
                pool=record.pool or "",
                intent_id=record.intent_id,
                hour=hour,
                first_at=at,
                last_at=piece_end,
                up_s=seconds,
                gpu_s=used * seconds,
                idle_s=idle_s,
                idle_usd=price * idle_s / _HOUR,
                last_idle=idle,
            )
        )
        at = piece_end
    return rows


class UsageMeter:
    """Meters ``store``'s billing cloud nodes against ``fleet`` (None: no GPU readings) and
    the scheduler snapshot each pass hands it. ``clock``: the store's (wall-clock seconds)."""

    def __init__(
        self,
        store: Store,
        pools: Iterable[PoolSpec],
        fleet: Fleet | None,
        *,
        clock: Callable[[], float] = time.time,
        min_interval_s: float = MIN_INTERVAL_S,
        max_gap_s: float = MAX_GAP_S,
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.min_interval_s = min_interval_s
        self.max_gap_s = max_gap_s
        self._clock = clock
        self._thresholds = {pool.name: pool.policy.idle_gpu_util_below for pool in pools}
        #: When the last metering was (None: not yet in this process).
        self.last_at: float | None = None
        #: The nodes idle at the last metering.
        self.idle: frozenset[str] = frozenset()

    def due(self, now: float) -> bool:
        return self.last_at is None or now - self.last_at >= self.min_interval_s

    def record(self, snapshot: SchedulerSnapshot | None, *, force: bool = False) -> int:
        """Meter the time since the last metering, if ``min_interval_s`` has passed (or
        ``force``); returns the rows written. The first call in a process, and one after a
        gap over ``max_gap_s``, only starts the clock."""
        now = self._clock()
        if not force and not self.due(now):
            return 0
        last, self.last_at = self.last_at, now
        if last is None or not 0 < now - last <= self.max_gap_s:
            self.idle = frozenset()
            return 0
        return self.store.add_usage(self._rows(snapshot, last, now))

    def _rows(self, snapshot: SchedulerSnapshot | None, last: float, now: float) -> list[UsageRow]:
        jobs = _jobs_by_node(snapshot)
        rows: list[UsageRow] = []
        idle: set[str] = set()
        for record in self._billing():
            reading = Reading(
                None if jobs is None else jobs.get(record.name, 0),
                gpu_utils(self.fleet, record.name),
            )
            threshold = self._thresholds.get(record.pool or "", _DEFAULT_IDLE_PCT)
            node_idle = is_idle(record.state, reading, threshold)
            if node_idle:
                idle.add(record.name)
            start = max(last, min(record.created_at, now))
            rows.extend(usage_rows(record, reading, idle=node_idle, start=start, end=now))
        self.idle = frozenset(idle)
        return rows

    def _billing(self) -> Sequence[NodeRecord]:
        return [
            record
            for record in self.store.nodes(live_only=True)
            if record.kind is NodeKind.CLOUD and bills(record.state)
        ]


def _jobs_by_node(snapshot: SchedulerSnapshot | None) -> Counter[str] | None:
    """Jobs running (or completing) per node; None without a scheduler."""
    if snapshot is None:
        return None
    counts: Counter[str] = Counter()
    for job in snapshot.jobs:
        if job.state is not JobState.PENDING:
            counts.update(job.nodes)
    return counts
