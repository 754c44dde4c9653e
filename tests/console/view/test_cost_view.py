"""What the cost report looks like (``view/costs.py``) and the burst dialog's projection
(``view/actions.py``): budgets' statuses from a real store at fixed times."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.console.cost.helpers import HOUR, POOL, burst, launch
from tidectl.console.config.loader import parse_config
from tidectl.console.config.model import Budget, BudgetPeriod
from tidectl.console.cost.budgets import budget_status
from tidectl.console.cost.ends import EndCause
from tidectl.console.cost.report import BurstCost, cost_report
from tidectl.console.lifecycle.store import Store
from tidectl.console.view.actions import burst_form, burst_projection
from tidectl.console.view.costs import BudgetLevel, SpendHeadline, aligned, end_words, headline

NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(tmp_path / "store.sqlite3") as opened:
        intent = burst(opened, "h100", NOON - 2 * HOUR)
        launch(opened, "h-1", intent, 50.0, NOON - 2 * HOUR)  # $100 spent by noon, $50/h
        yield opened


def test_the_projection_names_the_budget_reached_first_at_the_new_burn(store: Store) -> None:
    day = budget_status(Budget(400.0, BudgetPeriod.DAY), store, NOON)
    pool = budget_status(Budget(250.0, BudgetPeriod.DAY, "h100"), store, NOON)
    # $150 left of the pool's at $50 + $25 an hour: 2 h; the cluster's $300 left: 4 h.
    assert burst_projection("h100", 25.0, [day, pool]) == (
        "projected: pool h100's daily budget of $250.00 reached in about 2.0 h (at $75.00/h)"
    )
    # A pool's budget does not cover another pool.
    assert burst_projection("a100", 25.0, [pool]) == "projected: no budget covers this pool"
    assert burst_projection("a100", 25.0, [day, pool]).endswith(
        "cluster's daily budget of $400.00 reached in about 4.0 h (at $75.00/h)"
    )
    # Not before the day ends (12 h left): said, with what is left.
    month = budget_status(Budget(10_000.0, BudgetPeriod.DAY), store, NOON)
    assert burst_projection("h100", 25.0, [month]) == (
        "projected: no budget reached before its period ends ($9,900.00 left of the "
        "cluster's daily budget of $10,000.00)"
    )
    # Under an hour: in minutes.
    tight = budget_status(Budget(120.0, BudgetPeriod.DAY), store, NOON)
    assert "reached in about 16 min" in burst_projection("h100", 25.0, [tight])
    reached = budget_status(Budget(90.0, BudgetPeriod.DAY), store, NOON)
    assert "is reached already" in burst_projection("h100", 25.0, [reached])


def test_the_burst_form_carries_the_projection_once_budgets_are_read(store: Store) -> None:
    pool = budget_status(Budget(250.0, BudgetPeriod.DAY, "h100"), store, NOON)
    assert burst_form(POOL, "1", live=1, price=25.0, priced=True).projection == ""
    form = burst_form(POOL, "2", live=1, price=25.0, priced=True, budgets=[pool])
    assert form.projection.endswith("reached in about 1.5 h (at $100.00/h)")  # $150 at $100/h
    unpriced = burst_form(POOL, "2", live=1, price=None, priced=True, budgets=[pool])
    assert unpriced.projection == ""
    assert burst_form(POOL, "2", live=1, price=25.0, priced=True, budgets=[]).projection == (
        "projected: no budget covers this pool"
    )


def test_the_headline_warns_past_warn_at_and_says_reached(store: Store, tmp_path: Path) -> None:
    (tmp_path / "known_hosts").write_text("")
    text = '[cluster]\nname = "lab"\n[ssh]\nuser = "t"\nknown_hosts = "known_hosts"\n'
    base = parse_config(text + '[[nodes]]\nnames = "gpu1"\n', tmp_path / "cluster.toml")

    def level(*budgets: Budget) -> SpendHeadline:
        return headline(cost_report(store, replace(base, budgets=budgets), NOON))

    assert level() == SpendHeadline(100.0)
    calm = level(Budget(1000.0, BudgetPeriod.DAY))
    assert calm.level is BudgetLevel.NONE and calm.text().plain == "today $100.00"
    warned = level(Budget(1000.0, BudgetPeriod.DAY), Budget(120.0, BudgetPeriod.DAY, "h100"))
    assert (
        warned.level is BudgetLevel.WARN and warned.text().plain == "today $100.00 (▲ budget 83%)"
    )
    assert str(warned.text().style) == "bold yellow"
    over = level(Budget(80.0, BudgetPeriod.MONTH))
    assert over.text().plain == "today $100.00 (✖ budget reached)"
    assert str(over.text().style) == "bold red"


def test_a_bursts_end_in_words_and_tables_aligned() -> None:
    base = BurstCost(
        "abcdef0123", "h100", "alice", NOON, True, 1, 2.0, 16.0, 4.0, 100.0, 100.0, 50.0
    )
    assert end_words(base) == "running"
    ended = replace(base, running=False, ended_at=NOON, ended_why=EndCause.PERSON, ended_by="bob")
    assert end_words(ended) == "ended 2026-11-29 12:00 · by bob"
    idle = replace(ended, ended_why=EndCause.IDLE)
    assert end_words(idle) == "ended 2026-11-29 12:00 · idle policy"
    lines = aligned((("NAME", "SPENT"), [("a", "$1.00"), ("long-name", "$100.00")]))
    assert lines == ["NAME         SPENT", "a            $1.00", "long-name  $100.00"]
