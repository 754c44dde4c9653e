"""Budgets against the ledger: how much of each is spent, and whether a burst still fits.

Spend comes from the store's ledger (start/stop times and the price each node launched at), per
UTC calendar day or month. A burst must fit its first hour: what the period has spent, plus
an hour of everything burning now and of what the burst adds, must stay within the limit —
a burst that would pass the budget within the hour is refused before any provider call,
with the amount by which it would pass it. Reaching a limit drains the pool (the policy loop,
``console/policy``); ``warn_at`` makes the UIs warn before that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from tidectl.console.config.model import Budget, BudgetPeriod

__all__ = [
    "BURST_HORIZON_S",
    "BudgetStatus",
    "Ledger",
    "budget_name",
    "budget_refusal",
    "budget_status",
    "budgets_for",
    "period_start",
]

#: How long a new burst must fit within every budget that covers it.
BURST_HORIZON_S: Final = 3600.0


class Ledger(Protocol):
    """What budgets read (the store, or a front end's mirror of it)."""

    def spend(
        self,
        pool: str | None = None,
        until: float | None = None,
        *,
        since: float | None = None,
    ) -> float: ...

    def burn_rate(self, pool: str | None = None) -> float: ...


def period_start(period: BudgetPeriod, now: float) -> float:
    """The start of the UTC day or month ``now`` (epoch seconds) falls in."""
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is BudgetPeriod.MONTH:
        start = start.replace(day=1)
    return start.timestamp()


def period_end(period: BudgetPeriod, now: float) -> float:
    """The end of the UTC day or month ``now`` falls in (the next one's start)."""
    start = datetime.fromtimestamp(period_start(period, now), UTC)
    if period is BudgetPeriod.DAY:
        return start.timestamp() + 86400.0
    year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
    return start.replace(year=year, month=month).timestamp()


_ADJECTIVE: Final = {BudgetPeriod.DAY: "daily", BudgetPeriod.MONTH: "monthly"}


def budget_name(budget: Budget) -> str:
    """``pool h100's daily budget of $2,000.00``."""
    return f"{budget.scope}'s {_ADJECTIVE[budget.period]} budget of {money(budget.limit)}"


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """One budget now: spent in its period, the burn that counts against it."""

    budget: Budget
    spent: float
    burn_per_hour: float
    now: float

    @property
    def remaining(self) -> float:
        return max(0.0, self.budget.limit - self.spent)

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget.limit

    @property
    def warning(self) -> bool:
        return self.spent >= self.budget.warn_at * self.budget.limit

    @property
    def hours_left(self) -> float:
        """Hours until the limit at the burn of now (inf when nothing burns)."""
        if self.exhausted:
            return 0.0
        return math.inf if self.burn_per_hour <= 0 else self.remaining / self.burn_per_hour

    def sentence(self) -> str:
        budget = self.budget
        head = f"{budget_name(budget)}: {money(self.spent)} spent"
        if self.exhausted:
            return f"{head}, reached"
        if math.isinf(self.hours_left):
            return f"{head}, {money(self.remaining)} left"
        return (
            f"{head}, {money(self.remaining)} left — about {self.hours_left:.1f} h at "
            f"{money(self.burn_per_hour)}/h"
        )


def money(dollars: float) -> str:
    return f"${dollars:,.2f}"


def budgets_for(budgets: Sequence[Budget], pool: str) -> list[Budget]:
    """The budgets a pool's spend counts against: its own and the cluster's."""
    return [b for b in budgets if b.pool is None or b.pool == pool]


def budget_status(budget: Budget, ledger: Ledger, now: float) -> BudgetStatus:
    since = period_start(budget.period, now)
    return BudgetStatus(
        budget,
        spent=ledger.spend(budget.pool, until=now, since=since),
        burn_per_hour=ledger.burn_rate(budget.pool),
        now=now,
    )


def budget_refusal(
    budgets: Sequence[Budget],
    ledger: Ledger,
    pool: str,
    *,
    count: int,
    price_per_hour: float,
    now: float,
) -> str | None:
    """Why a burst of ``count`` nodes at ``price_per_hour`` into ``pool`` may not start, or
    None when it fits every budget that covers the pool for :data:`BURST_HORIZON_S`."""
    hours = BURST_HORIZON_S / 3600.0
    added = count * price_per_hour
    for budget in budgets_for(budgets, pool):
        status = budget_status(budget, ledger, now)
        # Within the horizon the period may end; spend past its end counts in the next one.
        horizon_h = min(hours, max(0.0, period_end(budget.period, now) - now) / 3600.0)
        projected = status.spent + (status.burn_per_hour + added) * horizon_h
        if projected <= budget.limit + 1e-9:
            continue
        over = projected - budget.limit
        room = budget.limit - status.spent - status.burn_per_hour * horizon_h
        fit = 0 if price_per_hour <= 0 else max(0, math.floor(room / (price_per_hour * horizon_h)))
        return (
            f"a burst of {count} node(s) at {money(price_per_hour)}/h into {pool} would pass "
            f"{budget_name(budget)} by "
            f"{money(over)} within its first hour ({money(status.spent)} spent this "
            f"{budget.period}, {money(status.burn_per_hour)}/h burning now); "
            + (f"at most {fit} node(s) fit. " if fit else "none fit until the period ends. ")
            + "Raise the limit in cluster.toml's [[budgets]] or burst fewer nodes"
        )
    return None
