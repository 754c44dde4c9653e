"""What the cost report looks like to people: the cells of ``tidectl cost`` and of the
console's costs view (``$``), the header's spend today, and the burn over the day.

Both front ends show the same words: the CLI aligns them as text, the console puts them in
Rich tables. Everything here is computed from a :class:`~tidectl.console.cost.report.CostReport`
and does no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from rich.table import Table
from rich.text import Text

from tidectl.console.cost.budgets import BudgetStatus, money
from tidectl.console.cost.ends import EndCause
from tidectl.console.cost.report import BurstCost, CostReport

__all__ = [
    "BUDGET_STYLE",
    "BudgetLevel",
    "SpendHeadline",
    "aligned",
    "burn_series",
    "burst_rows",
    "end_words",
    "headline",
    "no_plane_line",
    "node_rows",
    "pool_rows",
    "rich_table",
    "summary_lines",
    "utc_time",
]

Rows = tuple[tuple[str, ...], list[tuple[str, ...]]]

_CAUSE_WORDS: Final = {
    EndCause.IDLE: "idle policy",
    EndCause.BUDGET: "budget reached",
    EndCause.MAX_LIFETIME: "max lifetime",
    EndCause.POLICY: "policy",
    EndCause.SLURM: "Slurm powered it down",
    EndCause.CANCELLED: "cancelled",
    EndCause.FAILED: "failed",
    EndCause.RECONCILE: "reconcile loop",
}


class BudgetLevel(StrEnum):
    NONE = "none"  # no budget, or all below warn_at
    WARN = "warn"  # one is past its warn_at
    REACHED = "reached"  # one is reached: bursts are refused, the policy drains


#: The header's style per level; a symbol goes with it (colour is never the only signal).
BUDGET_STYLE: Final = {
    BudgetLevel.NONE: "",
    BudgetLevel.WARN: "bold yellow",
    BudgetLevel.REACHED: "bold red",
}
_BUDGET_MARK: Final = {BudgetLevel.NONE: "", BudgetLevel.WARN: "▲", BudgetLevel.REACHED: "✖"}


@dataclass(frozen=True, slots=True)
class SpendHeadline:
    """What the header shows of the cost report: spent today, and the worst budget."""

    today: float
    level: BudgetLevel = BudgetLevel.NONE
    #: The worst budget's share spent (0..), when there is a budget.
    used: float | None = None

    def text(self) -> Text:
        line = Text(f"today {money(self.today)}", style=BUDGET_STYLE[self.level])
        if self.level is not BudgetLevel.NONE and self.used is not None:
            word = "reached" if self.level is BudgetLevel.REACHED else f"{self.used:.0%}"
            line.append(f" ({_BUDGET_MARK[self.level]} budget {word})")
        return line


def headline(report: CostReport) -> SpendHeadline:
    worst = max(report.budgets, key=_used, default=None)
    if worst is None:
        return SpendHeadline(report.today)
    level = (
        BudgetLevel.REACHED
        if worst.exhausted
        else BudgetLevel.WARN
        if any(status.warning for status in report.budgets)
        else BudgetLevel.NONE
    )
    return SpendHeadline(report.today, level, _used(worst))


def _used(status: BudgetStatus) -> float:
    limit = status.budget.limit
    return math.inf if limit <= 0 else status.spent / limit


def no_plane_line(problem: str | None) -> str:
    """Why the costs view has nothing to show: the report is read through a control plane."""
    if problem:
        return f"The costs are read through the control plane, which is off here: {problem}."
    return "The control plane is still starting; the costs show once it is up."


def burn_series(report: CostReport) -> list[float]:
    """Dollars an hour in each slot of the UTC day so far (the last one: its part so far)."""
    series = []
    for i, spent in enumerate(report.day_spend):
        begin = report.day_start + i * report.slot_s
        seconds = min(report.slot_s, report.now - begin)
        series.append(spent * 3600.0 / seconds if seconds > 0 else 0.0)
    return series


def utc_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")


def _hours(hours: float) -> str:
    return f"{hours:,.1f}"


def _window(report: CostReport) -> str:
    if report.since == report.day_start:
        return "today (UTC)"
    return f"since {utc_time(report.since)} UTC"


def summary_lines(report: CostReport) -> list[str]:
    """The report's totals, a line each, and a line per budget."""
    idle = f" (idle {money(report.idle_per_hour)}/h)" if report.idle_per_hour else ""
    lines = [
        f"burn now {money(report.burn_per_hour)}/h{idle} · {report.running_bursts} burst(s) "
        "running",
        f"spent today {money(report.today)} · this month {money(report.month)}",
        f"{_window(report)}: {money(report.spend)} spent, {money(report.idle_spend)} of it "
        f"idle · GPU-hours {_hours(report.gpu_hours_used)} used of "
        f"{_hours(report.gpu_hours_paid)} paid",
    ]
    lines += [status.sentence() for status in report.budgets]
    return lines


def pool_rows(report: CostReport) -> Rows:
    head: tuple[str, ...] = ("POOL", "NODES", "BURN/H", "IDLE/H", "SPENT", "IDLE $", "TODAY")
    head += ("MONTH", "NODE-H", "GPU-H PAID", "GPU-H USED")
    rows: list[tuple[str, ...]] = [
        (
            p.pool,
            str(p.billing),
            money(p.burn_per_hour),
            money(p.idle_per_hour),
            money(p.spend),
            money(p.idle_spend),
            money(p.today),
            money(p.month),
            _hours(p.node_hours),
            _hours(p.gpu_hours_paid),
            _hours(p.gpu_hours_used),
        )
        for p in report.pools
    ]
    return head, rows


def end_words(burst: BurstCost) -> str:
    """``running``, or when and why the burst ended (``14:05 idle policy``)."""
    if burst.running:
        return "running"
    when = utc_time(burst.ended_at) if burst.ended_at is not None else "-"
    if burst.ended_why is EndCause.PERSON:
        why = f"by {burst.ended_by}"
    elif burst.ended_why is None:
        why = burst.ended_reason or "-"
    else:
        why = _CAUSE_WORDS[burst.ended_why]
    return f"ended {when} · {why}"


def burst_rows(report: CostReport) -> Rows:
    head: tuple[str, ...] = ("BURST", "POOL", "STARTED", "BY", "NODES", "NODE-H")
    head += ("GPU-H PAID", "GPU-H USED", "SPENT", "BURN/H", "STATE")
    rows: list[tuple[str, ...]] = [
        (
            b.intent_id[:8],
            b.pool,
            utc_time(b.started_at),
            b.asked_by,
            str(b.nodes),
            _hours(b.node_hours),
            _hours(b.gpu_hours_paid),
            _hours(b.gpu_hours_used),
            money(b.spend),
            money(b.burn_per_hour),
            end_words(b),
        )
        for b in report.bursts
    ]
    return head, rows


def node_rows(report: CostReport) -> Rows:
    head = ("NODE", "POOL", "STATE", "PRICE/H", "SPENT", "IDLE $", "NODE-H", "GPU-H USED")
    rows: list[tuple[str, ...]] = [
        (
            n.node,
            n.pool,
            f"{n.state}{' (idle)' if n.idle else ''}",
            "-" if n.price_per_hour is None else money(n.price_per_hour),
            money(n.spend),
            money(n.idle_spend),
            _hours(n.node_hours),
            _hours(n.gpu_hours_used),
        )
        for n in report.nodes
    ]
    return head, rows


def aligned(rows: Rows) -> list[str]:
    """A table as lines of text: the first column to the left, figures to the right."""
    head, body = rows
    every = [head, *body]
    widths = [max(len(row[i]) for row in every) for i in range(len(head))]
    lines = []
    for row in every:
        cells = [
            cell.ljust(width) if i == 0 or not _figure(body, i) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def rich_table(rows: Rows, title: str) -> Table:
    head, body = rows
    table = Table(title=title, title_justify="left", expand=False)
    for i, name in enumerate(head):
        table.add_column(name, justify="right" if i and _figure(body, i) else "left")
    for row in body:
        table.add_row(*row)
    return table


def _figure(body: Sequence[tuple[str, ...]], column: int) -> bool:
    """Whether a column holds figures (dollars, hours, counts): right-aligned."""
    cells = [row[column] for row in body]
    return bool(cells) and all(cell[:1] in "$-0123456789" for cell in cells)
