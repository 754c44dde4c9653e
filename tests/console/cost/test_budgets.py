"""Budgets against a real store's ledger (``console/cost/budgets.py``): UTC day and month
periods, what counts against a pool's budget and the cluster's, and the refusal of a burst
that would pass one within its first hour — with the amount and how many nodes still fit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tidectl.console.config.model import Budget, BudgetPeriod
from tidectl.console.cost.budgets import (
    budget_refusal,
    budget_status,
    period_end,
    period_start,
)
from tidectl.console.lifecycle.states import NodeKind, State
from tidectl.console.lifecycle.store import Store

NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.sqlite3") as opened:
        yield opened


def billing(store: Store, name: str, pool: str, price: float, start: float) -> None:
    store.add_node(
        name, NodeKind.CLOUD, pool, State.REQUESTED, start, reason="b", actor="a", request_id="r"
    )
    store.open_ledger(name, pool, "intent-1", price, at=start)


def test_periods_are_utc_days_and_months() -> None:
    assert period_start(BudgetPeriod.DAY, NOON) == NOON - 12 * HOUR
    assert period_end(BudgetPeriod.DAY, NOON) == NOON + 12 * HOUR
    assert period_start(BudgetPeriod.MONTH, NOON) == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    december = datetime(2026, 12, 31, 23, tzinfo=UTC).timestamp()
    assert period_end(BudgetPeriod.MONTH, december) == datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def test_status_counts_the_period_only_and_the_pools_own_spend(store: Store) -> None:
    billing(store, "h-1", "h100", 100.0, NOON - 14 * HOUR)  # started yesterday, 10 pm
    billing(store, "a-1", "a100", 10.0, NOON - 2 * HOUR)
    pool_day = budget_status(Budget(2000.0, BudgetPeriod.DAY, "h100"), store, NOON)
    assert pool_day.spent == pytest.approx(1200.0)  # since midnight only
    assert pool_day.burn_per_hour == 100.0 and pool_day.hours_left == pytest.approx(8.0)
    assert not pool_day.exhausted and not pool_day.warning  # warns from $1,600
    cluster = budget_status(Budget(1000.0, BudgetPeriod.DAY), store, NOON)
    assert cluster.spent == pytest.approx(1220.0) and cluster.exhausted and cluster.remaining == 0
    assert cluster.sentence() == "the cluster's daily budget of $1,000.00: $1,220.00 spent, reached"


def test_a_burst_that_would_pass_a_budget_in_its_first_hour_is_refused_by_how_much(
    store: Store,
) -> None:
    billing(store, "h-1", "h100", 100.0, NOON - 10 * HOUR)  # $1,000 today, $100/h
    budgets = [Budget(1500.0, BudgetPeriod.DAY, "h100"), Budget(1e6, BudgetPeriod.MONTH)]
    # $1,000 + an hour of $100 + 4 x $98 = $1,492: fits.
    assert budget_refusal(budgets, store, "h100", count=4, price_per_hour=98.0, now=NOON) is None
    refused = budget_refusal(budgets, store, "h100", count=6, price_per_hour=98.0, now=NOON)
    assert refused == (
        "a burst of 6 node(s) at $98.00/h into h100 would pass pool h100's daily budget of "
        "$1,500.00 by $188.00 within its first hour ($1,000.00 spent this day, $100.00/h "
        "burning now); at most 4 node(s) fit. Raise the limit in cluster.toml's [[budgets]] "
        "or burst fewer nodes"
    )
    # Another pool's budget does not count; the cluster's does.
    assert budget_refusal(budgets, store, "a100", count=6, price_per_hour=98.0, now=NOON) is None
    tight = [Budget(1000.0, BudgetPeriod.MONTH)]
    refused = budget_refusal(tight, store, "a100", count=1, price_per_hour=1.0, now=NOON)
    assert refused is not None and "none fit until the period ends" in refused


def test_near_the_end_of_the_day_only_what_is_left_of_it_counts(store: Store) -> None:
    late = NOON + 11.5 * HOUR  # 23:30 UTC: half an hour of the day is left
    budgets = [Budget(100.0, BudgetPeriod.DAY)]
    assert budget_refusal(budgets, store, "a", count=1, price_per_hour=190.0, now=late) is None
    assert budget_refusal(budgets, store, "a", count=1, price_per_hour=210.0, now=late)
