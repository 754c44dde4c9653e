"""``tidectl cost -c cluster.toml [--since WHEN] [--json]``: what the cluster burns and spent.

Reads the lifecycle store, as ``tidectl nodes`` does (a WAL reader never blocks the control
plane that writes it): the burn rate now (and the part of it on idle nodes), spend today and
this month (UTC), spend in the window (``--since``, default the UTC day) per pool, per burst
and per node, each burst's P&L — node-hours, GPU-hours paid and used, spend, and when and why
it ended — and the budgets. Aligned text for people; ``--json`` for scripts, with the same
keys every time (docs/cost.md). A machine that never burst has no store: that is said, and
no file is created. Exit status 0; 2 for a bad command line or config, or a store from a
newer tidectl.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tidectl.console.commands.audit import since as parse_since
from tidectl.console.commands.run import UsageError
from tidectl.console.config.loader import load_config
from tidectl.console.control.assemble import AssemblyError, store_path
from tidectl.console.cost.budgets import BudgetStatus
from tidectl.console.cost.report import (
    BurstCost,
    CostReport,
    NodeCost,
    PoolCost,
    cost_report,
    empty_report,
)
from tidectl.console.lifecycle.store import Store
from tidectl.console.view.costs import aligned, burst_rows, node_rows, pool_rows, summary_lines

__all__ = ["add_parser", "main", "report_json"]

#: Decimal places kept in the JSON: dollars and hours to a hundredth of a cent or hour.
_PLACES = 4


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "cost",
        help="burn rate, spend per pool, burst and node, and the budgets",
        description="What the cluster's cloud nodes burn now and spent today, this month and "
        "since --since: per pool, per burst (with its P&L: node-hours, GPU-hours paid and "
        "used, and when and why it ended) and per node, and the budgets. Reads the store; "
        "creates none.",
    )
    parser.add_argument("-c", "--config", required=True, help="cluster.toml")
    parser.add_argument(
        "--since",
        metavar="WHEN",
        help="the window's start: a UTC time (2025-11-29T05:00) or a duration back from now "
        "(90s, 15m, 2h, 7d, 1w); default: the start of the UTC day",
    )
    parser.add_argument(
        "--store",
        type=Path,
        metavar="PATH",
        help="the store file (default: [store] path, else per cluster name)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        path: Path = store_path(config, args.store)
    except AssemblyError as exc:
        raise UsageError(str(exc)) from None
    now = time.time()
    start = _since(args.since, now)
    if path.exists():
        with Store.open(path) as store:
            report = cost_report(store, config, now, start)
    else:
        report = empty_report(config, now, start)
    if args.json:
        document = {"store": str(path), **report_json(report)}
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    if not path.exists():
        _say(
            f"No lifecycle store at {path} yet: nothing has been burst for {config.name} from "
            "this machine, so nothing was spent."
        )
        return 0
    _say(f"{config.name}: costs at {_utc(now)} UTC")
    for line in summary_lines(report):
        _say(f"  {line}")
    for rows in (pool_rows(report), burst_rows(report), node_rows(report)):
        if rows[1]:
            _say("")
            for line in aligned(rows):
                _say(line)
    return 0


def _since(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    start = parse_since(value, datetime.fromtimestamp(now, UTC)).timestamp()
    if start >= now:
        raise UsageError(f"--since {value!r} is not in the past: give a time before now")
    return start


def report_json(report: CostReport) -> dict[str, Any]:
    """The report as ``tidectl cost --json`` prints it (docs/cost.md lists the keys)."""
    return {
        "cluster": report.cluster,
        "now": report.now,
        "since": report.since,
        "burn_per_hour": _r(report.burn_per_hour),
        "idle_per_hour": _r(report.idle_per_hour),
        "spend": {
            "window": _r(report.spend),
            "idle_window": _r(report.idle_spend),
            "today": _r(report.today),
            "month": _r(report.month),
        },
        "gpu_hours": {"paid": _r(report.gpu_hours_paid), "used": _r(report.gpu_hours_used)},
        "pools": [_pool(p) for p in report.pools],
        "bursts": [_burst(b) for b in report.bursts],
        "nodes": [_node(n) for n in report.nodes],
        "budgets": [_budget(s) for s in report.budgets],
    }


def _r(value: float) -> float:
    return round(value, _PLACES)


def _pool(pool: PoolCost) -> dict[str, Any]:
    return {
        "pool": pool.pool,
        "billing": pool.billing,
        "burn_per_hour": _r(pool.burn_per_hour),
        "idle_per_hour": _r(pool.idle_per_hour),
        "spend": _r(pool.spend),
        "idle_spend": _r(pool.idle_spend),
        "today": _r(pool.today),
        "month": _r(pool.month),
        "node_hours": _r(pool.node_hours),
        "gpu_hours_paid": _r(pool.gpu_hours_paid),
        "gpu_hours_used": _r(pool.gpu_hours_used),
    }


def _burst(burst: BurstCost) -> dict[str, Any]:
    return {
        "intent_id": burst.intent_id,
        "pool": burst.pool,
        "asked_by": burst.asked_by,
        "started_at": burst.started_at,
        "state": "running" if burst.running else "ended",
        "nodes": burst.nodes,
        "node_hours": _r(burst.node_hours),
        "gpu_hours_paid": _r(burst.gpu_hours_paid),
        "gpu_hours_used": _r(burst.gpu_hours_used),
        "spend": _r(burst.spend),
        "spend_in_window": _r(burst.spend_in_window),
        "burn_per_hour": _r(burst.burn_per_hour),
        "ended_at": burst.ended_at,
        "ended_why": None if burst.ended_why is None else str(burst.ended_why),
        "ended_reason": burst.ended_reason,
        "ended_by": burst.ended_by,
    }


def _node(node: NodeCost) -> dict[str, Any]:
    return {
        "node": node.node,
        "pool": node.pool,
        "intent_id": node.intent_id,
        "state": str(node.state),
        "price_per_hour": node.price_per_hour,
        "billing": node.billing,
        "idle": node.idle,
        "spend": _r(node.spend),
        "idle_spend": _r(node.idle_spend),
        "node_hours": _r(node.node_hours),
        "gpu_hours_used": _r(node.gpu_hours_used),
    }


def _budget(status: BudgetStatus) -> dict[str, Any]:
    budget = status.budget
    hours = status.hours_left
    return {
        "pool": budget.pool,
        "period": str(budget.period),
        "limit": budget.limit,
        "warn_at": budget.warn_at,
        "spent": _r(status.spent),
        "remaining": _r(status.remaining),
        "burn_per_hour": _r(status.burn_per_hour),
        "hours_left": None if math.isinf(hours) else _r(hours),
        "warning": status.warning,
        "reached": status.exhausted,
    }


def _utc(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
