"""``tidectl events -c cluster.toml``: what happened to the nodes, who asked, and why.

Every lifecycle move the store recorded — a person's drain, the reconcile loop's confirmation,
a policy's rule (actor ``policy``, the rule and its reason in the text) — newest last. Reads
the store; creates none.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tidectl.console.audit.query import SINCE_HELP, parse_since
from tidectl.console.commands.run import UsageError
from tidectl.console.config.loader import load_config
from tidectl.console.control.assemble import AssemblyError, store_path
from tidectl.console.lifecycle.states import Transition
from tidectl.console.lifecycle.store import Store


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "events",
        help="the nodes' lifecycle moves: who asked, which rule, why",
        description="List the lifecycle moves the store recorded, newest last: each node's "
        "state change with who asked (a person, the reconcile loop, the policy loop as "
        "'policy') and why. Creates no store where there is none.",
    )
    parser.add_argument("-c", "--config", required=True, help="cluster.toml")
    parser.add_argument("--store", type=Path, metavar="PATH", help="the store file")
    parser.add_argument("--since", default="1d", help=f"from when (default 1d); {SINCE_HELP}")
    parser.add_argument("--node", help="only this node's moves")
    parser.add_argument("--actor", help="only moves asked by this actor, e.g. policy")
    parser.add_argument("--limit", type=int, default=200, help="at most this many (newest)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def move_json(move: Transition) -> dict[str, Any]:
    return {
        "at": datetime.fromtimestamp(move.at, UTC).isoformat(timespec="seconds"),
        "node": move.node,
        "before": None if move.before is None else move.before.value,
        "after": move.after.value,
        "actor": move.actor,
        "reason": move.reason,
        "request_id": move.request_id,
    }


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        path: Path = store_path(config, args.store)
        since = parse_since(args.since, datetime.now(UTC)).timestamp()
    except AssemblyError as error:
        raise UsageError(str(error)) from None
    except ValueError as error:
        raise UsageError(f"--since {args.since!r}: {error}") from None
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: give 1 or more")
    moves: list[Transition] = []
    if path.exists():
        with Store.open(path) as store:
            moves = store.moves(since, node=args.node, actor=args.actor, limit=args.limit)
    if args.json:
        out = {"cluster": config.name, "store": str(path), "events": [move_json(m) for m in moves]}
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    console = Console()
    if not moves:
        console.print(f"No lifecycle moves since {args.since} in {path}.", markup=False)
        return 0
    table = Table(box=None, pad_edge=False)
    for column in ("time (UTC)", "node", "move", "by"):
        table.add_column(column, no_wrap=True)
    table.add_column("why", overflow="fold")
    for move in moves:
        row = move_json(move)
        table.add_row(
            row["at"].replace("+00:00", ""),
            move.node,
            f"{row['before'] or '·'} → {row['after']}",
            Text(move.actor, style="bold" if move.actor == "policy" else ""),
            Text(move.reason),
        )
    console.print(table)
    return 0
