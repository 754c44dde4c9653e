"""``tidectl events -c cluster.toml``: what happened to the nodes, who asked, and why.

Every lifecycle move the store recorded — a person's drain, the reconcile loop's confirmation,
a policy's rule (actor ``policy``, the rule and its reason in the text) — and every notice the
automation left without moving a node (a budget past its warning line), newest last. Reads
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
from tidectl.console.lifecycle.records import Notice
from tidectl.console.lifecycle.states import Transition
from tidectl.console.lifecycle.store import Store


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "events",
        help="the nodes' lifecycle moves and the policy's notices: who asked, which rule, why",
        description="List the lifecycle moves the store recorded, newest last: each node's "
        "state change with who asked (a person, the reconcile loop, the policy loop as "
        "'policy') and why; and the notices the policy loop left (budget warnings). Creates "
        "no store where there is none.",
    )
    parser.add_argument("-c", "--config", required=True, help="cluster.toml")
    parser.add_argument("--store", type=Path, metavar="PATH", help="the store file")
    parser.add_argument("--since", default="1d", help=f"from when (default 1d); {SINCE_HELP}")
    parser.add_argument("--node", help="only this node's moves (no notices)")
    parser.add_argument("--actor", help="only moves asked by this actor, e.g. policy")
    parser.add_argument("--limit", type=int, default=200, help="at most this many (newest)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def move_json(move: Transition) -> dict[str, Any]:
    return {
        "kind": "move",
        "at": _iso(move.at),
        "node": move.node,
        "before": None if move.before is None else move.before.value,
        "after": move.after.value,
        "actor": move.actor,
        "reason": move.reason,
        "request_id": move.request_id,
    }


def notice_json(notice: Notice) -> dict[str, Any]:
    return {
        "kind": "notice",
        "at": _iso(notice.at),
        "notice": notice.kind,
        "pool": notice.pool,
        "actor": notice.actor,
        "reason": notice.sentence,
    }


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


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
    events: list[Transition | Notice] = []
    if path.exists():
        with Store.open(path) as store:
            events.extend(store.moves(since, node=args.node, actor=args.actor, limit=args.limit))
            if args.node is None:  # a notice is about a pool or the whole, not one node
                events.extend(store.notices(since, actor=args.actor, limit=args.limit))
    # Newest last; the newest ``limit`` of both kinds together (sorted is stable: a move and
    # a notice of the same second stay in the store's order).
    events = sorted(events, key=lambda event: event.at)[-args.limit :]
    if args.json:
        out = {
            "cluster": config.name,
            "store": str(path),
            "events": [
                move_json(e) if isinstance(e, Transition) else notice_json(e) for e in events
            ],
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    console = Console()
    if not events:
        console.print(f"No lifecycle moves or notices since {args.since} in {path}.", markup=False)
        return 0
    table = Table(box=None, pad_edge=False)
    for column in ("time (UTC)", "node", "move", "by"):
        table.add_column(column, no_wrap=True)
    table.add_column("why", overflow="fold")
    for event in events:
        when = _iso(event.at).replace("+00:00", "")
        actor = Text(event.actor, style="bold" if event.actor == "policy" else "")
        if isinstance(event, Transition):
            move = f"{event.before.value if event.before else '·'} → {event.after.value}"
            table.add_row(when, event.node, move, actor, Text(event.reason))
        else:
            what = Text(event.kind.replace("-", " "), style="yellow")
            table.add_row(when, event.pool or "all pools", what, actor, Text(event.sentence))
    console.print(table)
    return 0
