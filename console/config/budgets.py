"""``[[budgets]]`` and ``[policies]``: what the cluster may spend, and the loop that keeps it so.

    [[budgets]]
    pool = "h100-east"        # omit for the whole cluster
    period = "day"            # day | month (UTC calendar)
    limit = 2000.0            # US dollars: hard
    warn_at = 0.8             # the UIs warn past this fraction of the limit

    [policies]
    enabled = true            # the policy loop (idle drain, pressure, lifetime, budgets)
    interval_s = 30

A burst that would pass a hard budget is refused before any provider call; reaching one
drains the pool's nodes (their jobs finish first). Per-pool automation is in
``[pools.policy]`` (``pools.py``).
"""

from __future__ import annotations

from tidectl.console.config.model import Budget, BudgetPeriod, PolicySettings, PoolSpec
from tidectl.console.config.table import Table

__all__ = ["read_budgets", "read_policies"]


def read_budgets(tables: list[Table], pools: tuple[PoolSpec, ...]) -> tuple[Budget, ...]:
    names = {pool.name for pool in pools}
    budgets: list[Budget] = []
    for table in tables:
        pool = table.string("pool", None, example='pool = "h100-east"')
        if pool is not None and pool not in names:
            known = ", ".join(sorted(names)) or "none"
            raise table.error(
                "pool", f'budget for pool "{pool}", but there is no such pool (pools: {known})'
            )
        period_text = table.string("period", "day", example='period = "day"')
        try:
            period = BudgetPeriod(period_text or "day")
        except ValueError:
            raise table.error(
                "period", f'period "{period_text}" is not day or month (UTC calendar periods)'
            ) from None
        if "limit" not in table.data:
            raise table.error(
                None, "a budget needs limit, the most it may spend in US dollars: limit = 2000"
            )
        limit = table.number("limit", 0.0, above=0.0)
        warn_at = table.number("warn_at", 0.8, above=0.0, at_most=1.0)
        table.finish()
        budget = Budget(limit=limit, period=period, pool=pool, warn_at=warn_at)
        for earlier in budgets:
            if (earlier.pool, earlier.period) == (pool, period):
                raise table.error(
                    None,
                    f"{budget.scope} has two {period} budgets; keep one (the smaller limit is "
                    "the one that counts)",
                )
        budgets.append(budget)
    return tuple(budgets)


def read_policies(table: Table | None) -> PolicySettings:
    if table is None:
        return PolicySettings()
    settings = PolicySettings(
        enabled=table.boolean("enabled", True),
        interval_s=table.number("interval_s", 30.0, at_least=1.0, at_most=3600.0),
    )
    table.finish()
    return settings
