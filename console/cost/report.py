"""The cost report: what the cluster burns and has spent, per pool, burst and node, and what
each burst's nodes did with the hours paid for.

Pure over the store and the config (``cost_report``): dollars and node-hours come from the
ledger (a stretch counts ``price * (min(stop, until) - max(start, since))``), GPU-hours used
and idle dollars from the usage meter's hourly rows (``cost/usage.py``; a row whose metered
span starts before the window counts its share). Times are epoch seconds; "today" and "this
month" are UTC, as budgets count them.

A burst's P&L is over its whole life — node-hours, GPU-hours paid (node-hours times the pool's
``gpus_per_node``) and used, spend — and it is listed when it billed in the window, started in
it, or still runs. How it ended comes from its nodes' moves (``cost/ends.py``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

from tidectl.console.config.model import BudgetPeriod, ClusterConfig
from tidectl.console.cost.budgets import BudgetStatus, budget_status, period_start
from tidectl.console.cost.ends import EndCause, NodeEnd, node_end, served
from tidectl.console.cost.usage import MAX_GAP_S
from tidectl.console.lifecycle.records import (
    IntentAction,
    IntentRecord,
    IntentStatus,
    LedgerEntry,
    NodeRecord,
    UsageRow,
)
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.lifecycle.store import Store

__all__ = [
    "SLOT_S",
    "BurstCost",
    "CostReport",
    "NodeCost",
    "PoolCost",
    "cost_report",
    "empty_report",
]

#: The burn-over-the-day series is spend per slot of this many seconds (15 minutes).
SLOT_S: Final = 900.0
_HOUR: Final = 3600.0


@dataclass(frozen=True, slots=True)
class PoolCost:
    """One pool: burning now, and spent in the window, today and this month."""

    pool: str
    billing: int  # nodes billing now
    burn_per_hour: float
    idle_per_hour: float  # the part of the burn on nodes idle now
    spend: float  # in the window
    idle_spend: float  # in the window
    today: float
    month: float
    node_hours: float  # in the window
    gpu_hours_paid: float
    gpu_hours_used: float


@dataclass(frozen=True, slots=True)
class NodeCost:
    """One cloud node that billed in the window (or bills now)."""

    node: str
    pool: str
    intent_id: str | None
    state: State
    price_per_hour: float | None
    billing: bool
    idle: bool  # idle at the last metering
    spend: float  # in the window
    idle_spend: float
    node_hours: float
    gpu_hours_used: float


@dataclass(frozen=True, slots=True)
class BurstCost:
    """One burst's P&L over its whole life, and when and why it ended."""

    intent_id: str
    pool: str
    asked_by: str
    started_at: float
    running: bool  # some node of it is not terminated yet
    nodes: int
    node_hours: float
    gpu_hours_paid: float
    gpu_hours_used: float
    spend: float
    spend_in_window: float
    burn_per_hour: float
    ended_at: float | None = None  # its last node terminated (or its launch failed)
    ended_why: EndCause | None = None  # the cause of the last node to leave service
    ended_reason: str | None = None
    ended_by: str | None = None


@dataclass(frozen=True, slots=True)
class CostReport:
    cluster: str
    now: float
    since: float  # the window is since..now
    burn_per_hour: float
    idle_per_hour: float
    spend: float  # in the window
    idle_spend: float  # in the window
    today: float  # since the UTC day began
    month: float  # since the UTC month began
    gpu_hours_paid: float  # in the window
    gpu_hours_used: float
    pools: tuple[PoolCost, ...]
    bursts: tuple[BurstCost, ...]
    nodes: tuple[NodeCost, ...]
    budgets: tuple[BudgetStatus, ...]
    #: Dollars spent in each ``slot_s`` since ``day_start`` (UTC midnight); the last slot is
    #: the one under way, up to ``now``.
    day_start: float
    slot_s: float
    day_spend: tuple[float, ...]

    @property
    def running_bursts(self) -> int:
        return sum(1 for burst in self.bursts if burst.running)


def cost_report(
    store: Store, config: ClusterConfig, now: float, since: float | None = None
) -> CostReport:
    """The report at ``now`` for the window ``since``..``now`` (default: the UTC day)."""
    return _Builder(store, config, now, since).report()


# -- pieces ------------------------------------------------------------------------------------


def _overlap(start: float, end: float, since: float, until: float) -> float:
    return max(0.0, min(end, until) - max(start, since))


def _seconds(entry: LedgerEntry, since: float, until: float) -> float:
    stop = until if entry.stopped_at is None else entry.stopped_at
    return _overlap(entry.started_at, stop, since, until)


def _cost(entry: LedgerEntry, since: float, until: float) -> float:
    return entry.price_per_hour * _seconds(entry, since, until) / _HOUR


def _share(row: UsageRow, since: float, until: float) -> float:
    """The part of a usage row that falls in the window (its span, evenly)."""
    span = row.last_at - row.first_at
    if span <= 0:
        return 1.0 if since <= row.first_at < until else 0.0
    return _overlap(row.first_at, row.last_at, since, until) / span


class _Builder:
    """One report's reads of the store, and the sums over them."""

    def __init__(
        self, store: Store, config: ClusterConfig, now: float, since: float | None
    ) -> None:
        self.store = store
        self.config = config
        self.now = now
        self.day = period_start(BudgetPeriod.DAY, now)
        self.month = period_start(BudgetPeriod.MONTH, now)
        self.since = self.day if since is None else min(since, now)
        self.records = {record.name: record for record in store.nodes()}
        self.stretches = store.ledger(since=min(self.since, self.month), until=now)
        self.gpus = {pool.name: pool.gpus_per_node for pool in config.pools}
        self.gpu_s: dict[str, float] = defaultdict(float)
        self.idle_usd: dict[str, float] = defaultdict(float)
        for row in store.usage(since=self.since, until=now):
            share = _share(row, self.since, now)
            self.gpu_s[row.node] += row.gpu_s * share
            self.idle_usd[row.node] += row.idle_usd * share
        self.idle_now = self._idle_now()

    def report(self) -> CostReport:
        nodes = self._nodes()
        pools = self._pools(nodes)
        return CostReport(
            cluster=self.config.name,
            now=self.now,
            since=self.since,
            burn_per_hour=sum(p.burn_per_hour for p in pools),
            idle_per_hour=sum(p.idle_per_hour for p in pools),
            spend=sum(p.spend for p in pools),
            idle_spend=sum(p.idle_spend for p in pools),
            today=sum(p.today for p in pools),
            month=sum(p.month for p in pools),
            gpu_hours_paid=sum(p.gpu_hours_paid for p in pools),
            gpu_hours_used=sum(p.gpu_hours_used for p in pools),
            pools=pools,
            bursts=self._bursts(),
            nodes=nodes,
            budgets=tuple(budget_status(b, self.store, self.now) for b in self.config.budgets),
            day_start=self.day,
            slot_s=SLOT_S,
            day_spend=_day_spend(self.stretches, self.day, self.now),
        )

    def _idle_now(self) -> set[str]:
        """The nodes idle at their latest metering, if it was recent (a meter that stopped
        says nothing about now)."""
        latest: dict[str, UsageRow] = {}
        for row in self.store.usage(since=self.now - MAX_GAP_S):
            if row.node not in latest or row.last_at >= latest[row.node].last_at:
                latest[row.node] = row
        return {name for name, row in latest.items() if row.last_idle}

    def _nodes(self) -> tuple[NodeCost, ...]:
        since, now = self.since, self.now
        spend: dict[str, float] = defaultdict(float)
        seconds: dict[str, float] = defaultdict(float)
        open_price: dict[str, float] = {}
        for entry in self.stretches:
            spend[entry.node] += _cost(entry, since, now)
            seconds[entry.node] += _seconds(entry, since, now)
            if entry.stopped_at is None:
                open_price[entry.node] = entry.price_per_hour
        shown = sorted(name for name in seconds if name in open_price or seconds[name] > 0)
        nodes = []
        for name in shown:
            record = self.records.get(name)
            if record is None or record.kind is not NodeKind.CLOUD:
                continue
            nodes.append(
                NodeCost(
                    node=name,
                    pool=record.pool or "",
                    intent_id=record.intent_id,
                    state=record.state,
                    price_per_hour=open_price.get(name, record.price_per_hour),
                    billing=name in open_price,
                    idle=name in self.idle_now and name in open_price,
                    spend=spend[name],
                    idle_spend=self.idle_usd.get(name, 0.0),
                    node_hours=seconds[name] / _HOUR,
                    gpu_hours_used=self.gpu_s.get(name, 0.0) / _HOUR,
                )
            )
        return tuple(nodes)

    def _pools(self, nodes: Sequence[NodeCost]) -> tuple[PoolCost, ...]:
        since, now = self.since, self.now
        names = [pool.name for pool in self.config.pools]
        names += sorted({e.pool for e in self.stretches} - set(names))  # a pool since removed
        by_pool: dict[str, list[LedgerEntry]] = defaultdict(list)
        for entry in self.stretches:
            by_pool[entry.pool].append(entry)
        pools = []
        for name in names:
            mine = by_pool.get(name, [])
            billing = [e for e in mine if e.stopped_at is None]
            idle = {n.node for n in nodes if n.pool == name and n.idle}
            members = {e.node for e in mine}
            node_hours = sum(_seconds(e, since, now) for e in mine) / _HOUR
            pools.append(
                PoolCost(
                    pool=name,
                    billing=len(billing),
                    burn_per_hour=sum(e.price_per_hour for e in billing),
                    idle_per_hour=sum(e.price_per_hour for e in billing if e.node in idle),
                    spend=sum(_cost(e, since, now) for e in mine),
                    idle_spend=sum(self.idle_usd.get(n, 0.0) for n in members),
                    today=sum(_cost(e, self.day, now) for e in mine),
                    month=sum(_cost(e, self.month, now) for e in mine),
                    node_hours=node_hours,
                    gpu_hours_paid=node_hours * self.gpus.get(name, 0),
                    gpu_hours_used=sum(self.gpu_s.get(n, 0.0) for n in members) / _HOUR,
                )
            )
        return tuple(pools)

    def _bursts(self) -> tuple[BurstCost, ...]:
        billed = {
            e.intent_id
            for e in self.stretches
            if e.stopped_at is None or _seconds(e, self.since, self.now) > 0
        }
        current: dict[str, list[NodeRecord]] = defaultdict(list)
        for record in self.records.values():
            if record.intent_id is not None:
                current[record.intent_id].append(record)
        bursts = []
        for intent in self.store.intents():
            if intent.action is not IntentAction.BURST:
                continue
            mine = current.get(intent.id, [])
            running = intent.status is IntentStatus.PENDING or any(
                r.state is not State.TERMINATED for r in mine
            )
            if running or intent.id in billed or intent.created_at >= self.since:
                bursts.append(self._burst(intent, mine, running))
        bursts.sort(key=lambda b: b.started_at, reverse=True)
        return tuple(bursts)

    def _burst(
        self, intent: IntentRecord, current: Sequence[NodeRecord], running: bool
    ) -> BurstCost:
        now = self.now
        mine = self.store.ledger(intent_id=intent.id)
        names = sorted({e.node for e in mine} | {r.name for r in current})
        hours = sum(_seconds(e, -math.inf, now) for e in mine) / _HOUR
        pool = intent.pool or (mine[0].pool if mine else "")
        gpu_s = sum(row.gpu_s for row in self.store.usage(intent_id=intent.id))
        burst = BurstCost(
            intent_id=intent.id,
            pool=pool,
            asked_by=intent.actor,
            started_at=intent.created_at,
            running=running,
            nodes=len(names),
            node_hours=hours,
            gpu_hours_paid=hours * self.gpus.get(pool, 0),
            gpu_hours_used=gpu_s / _HOUR,
            spend=sum(e.cost(now) for e in mine),
            spend_in_window=sum(_cost(e, self.since, now) for e in mine),
            burn_per_hour=sum(e.price_per_hour for e in mine if e.stopped_at is None),
        )
        return burst if running else self._ended(burst, intent, names)

    def _ended(self, burst: BurstCost, intent: IntentRecord, names: Sequence[str]) -> BurstCost:
        """``burst`` with when and why it ended: its last node's end, or its launch's."""
        ends: list[NodeEnd] = [
            node_end(name, served(self.store.history(name), intent.created_at)) for name in names
        ]
        closed = [end for end in ends if end.at is not None]
        if closed:
            last = max(closed, key=lambda end: end.at or 0.0)
            return replace(
                burst,
                ended_at=last.at,
                ended_why=last.cause,
                ended_reason=last.reason,
                ended_by=last.by,
            )
        # No node of it ever ended: none was launched.
        return replace(
            burst,
            ended_at=intent.status_at,
            ended_why=_INTENT_END.get(intent.status),
            ended_reason=intent.error or "no node was launched",
            ended_by=intent.actor,
        )


_INTENT_END: Final = {
    IntentStatus.FAILED: EndCause.FAILED,
    IntentStatus.CANCELLED: EndCause.CANCELLED,
}


def _day_spend(stretches: Sequence[LedgerEntry], day: float, now: float) -> tuple[float, ...]:
    slots = max(1, math.ceil((now - day) / SLOT_S))
    spend = [0.0] * slots
    for entry in stretches:
        stop = now if entry.stopped_at is None else min(entry.stopped_at, now)
        first = max(0, int((max(entry.started_at, day) - day) // SLOT_S))
        last = min(slots - 1, int((stop - day) // SLOT_S))
        for slot in range(first, last + 1):
            begin = day + slot * SLOT_S
            spend[slot] += _cost(entry, begin, min(begin + SLOT_S, now))
    return tuple(spend)


def empty_report(config: ClusterConfig, now: float, since: float | None = None) -> CostReport:
    """The report of a cluster that never billed (no store yet): zeros, and its budgets
    untouched."""
    day = period_start(BudgetPeriod.DAY, now)
    return CostReport(
        cluster=config.name,
        now=now,
        since=day if since is None else min(since, now),
        burn_per_hour=0.0,
        idle_per_hour=0.0,
        spend=0.0,
        idle_spend=0.0,
        today=0.0,
        month=0.0,
        gpu_hours_paid=0.0,
        gpu_hours_used=0.0,
        pools=(),
        bursts=(),
        nodes=(),
        budgets=tuple(BudgetStatus(b, 0.0, 0.0, now) for b in config.budgets),
        day_start=day,
        slot_s=SLOT_S,
        day_spend=_day_spend((), day, now),
    )
