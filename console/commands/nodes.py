"""``tidectl nodes -c cluster.toml``: every node the lifecycle store knows, and its state.

Reads the store: lifecycle state, pool, instance, how long in that state, and the cost so far
from the ledger (opening a store written by an older tidectl brings its schema up to date, as
any open does). A machine that never burst or drained has no store yet; that is said, not an
error, and no file is created.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tidectl.console.commands.run import UsageError
from tidectl.console.config.loader import load_config
from tidectl.console.control.assemble import AssemblyError, store_path
from tidectl.console.lifecycle.records import NodeRecord
from tidectl.console.lifecycle.store import Store
from tidectl.console.view.cells import age


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "nodes",
        help="the lifecycle state of every node the store knows",
        description="List the nodes in the cluster's lifecycle store: state, pool, instance, "
        "time in state and cost so far. Creates no store where there is none.",
    )
    parser.add_argument("-c", "--config", required=True, help="cluster.toml")
    parser.add_argument(
        "--store",
        type=Path,
        metavar="PATH",
        help="the store file (default: [store] path, else per cluster name)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")


def node_json(node: NodeRecord, now: float, cost: float) -> dict[str, Any]:
    return {
        "name": node.name,
        "kind": node.kind.value,
        "pool": node.pool,
        "state": node.state.value,
        "state_since": node.state_since,
        "in_state_s": round(max(0.0, now - node.state_since), 1),
        "instance_id": node.instance_id,
        "intent_id": node.intent_id,
        "cost_usd": round(cost, 2),
    }


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        path: Path = store_path(config, args.store)
    except AssemblyError as exc:
        raise UsageError(str(exc)) from None
    now = time.time()
    rows: list[dict[str, Any]] = []
    if path.exists():
        with Store.open(path) as store:
            rows = [node_json(n, now, store.spend(node=n.name, until=now)) for n in store.nodes()]
    if args.json:
        json.dump({"cluster": config.name, "store": str(path), "nodes": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    console = Console()
    if not path.exists():
        console.print(
            f"No lifecycle store at {path} yet: nothing has been burst or drained for "
            f"{config.name} from this machine.",
            markup=False,
            highlight=False,
        )
        return 0
    table = Table(title=f"{config.name}: {len(rows)} nodes in {path}", title_justify="left")
    for column in ("node", "kind", "pool", "state", "for", "instance", "cost"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            row["name"],
            row["kind"],
            row["pool"] or "-",
            row["state"],
            age(row["in_state_s"]),
            row["instance_id"] or "-",
            f"${row['cost_usd']:,.2f}",
        )
    console.print(table)
    return 0
