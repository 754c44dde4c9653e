"""``tidectl demo``: a simulated cluster, and the console on it (or, headless, its status).

Exit status 0 when the demo ran, whatever the health of its nodes (faults are part of the
demo); 2 with one line on stderr when it could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tidectl.console.commands import status
from tidectl.console.commands.console import require_terminal
from tidectl.console.commands.run import UsageError
from tidectl.console.demo import DEFAULT_FAULT_RATE_PER_HOUR, DEFAULT_NODES, DemoCluster

DEFAULT_SECONDS = 10.0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="a simulated cluster on this machine, and the console on it",
        description="Start a simulated GPU cluster (real SSH on 127.0.0.1, no root, no "
        "network, no config) and open the console on it. Jobs come and go, GPUs heat and "
        "cool, and faults happen at random; in the console, i injects one. With --headless, "
        "run it for --seconds without a screen and print the fleet's status at the end. Exit "
        "status 0 when the demo ran, even with unhealthy nodes (faults are part of the "
        "demo); 2 when it could not start.",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=DEFAULT_NODES,
        metavar="N",
        help=f"simulated nodes ({DEFAULT_NODES})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="same seed, same cluster (0)"
    )
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=DEFAULT_FAULT_RATE_PER_HOUR,
        metavar="R",
        help=f"random faults per node per hour ({DEFAULT_FAULT_RATE_PER_HOUR:g}: about one a "
        f"minute across {DEFAULT_NODES} nodes; 0: none)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="keep the cluster's folder here (cluster.toml, keys, faults.txt); default: a "
        "temporary folder removed at the end",
    )
    parser.add_argument(
        "--headless", action="store_true", help="no screen: run --seconds, print the status"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        metavar="S",
        help=f"with --headless: how long the demo runs ({DEFAULT_SECONDS:g})",
    )
    parser.add_argument("--json", action="store_true", help="with --headless: print JSON")


def main(args: argparse.Namespace) -> int:
    seconds = _seconds(args)
    if not args.headless:
        require_terminal("pass --headless to run the demo without a screen")
    cluster = DemoCluster(
        args.nodes, seed=args.seed, fault_rate_per_hour=args.fault_rate, out=args.out
    )
    with cluster:
        if args.headless:
            return _headless(cluster, args, seconds)
        from tidectl.console.tui.app import run_console

        return run_console(cluster.config, faults=cluster.faults)


def _seconds(args: argparse.Namespace) -> float:
    if not args.headless:
        for flag, given in (("--seconds", args.seconds is not None), ("--json", args.json)):
            if given:
                raise UsageError(f"{flag} is for --headless runs; add --headless or drop it")
        return DEFAULT_SECONDS
    seconds: float = DEFAULT_SECONDS if args.seconds is None else args.seconds
    if not (math.isfinite(seconds) and seconds > 0):
        raise UsageError(f"--seconds must be a number of seconds above 0, got {args.seconds}")
    return seconds


def _headless(cluster: DemoCluster, args: argparse.Namespace, seconds: float) -> int:
    # The demo runs its time: it does not stop once every node has reported, as status does.
    fleet = asyncio.run(status.collect(cluster.config, seconds, until_settled=False))
    cluster.check()
    if args.json:
        report: dict[str, Any] = status.fleet_json(cluster.config, fleet, time.monotonic())
        report.update(
            seconds=seconds,
            seed=args.seed,
            fault_rate_per_hour=args.fault_rate,
            out=str(cluster.out) if args.out is not None else None,
        )
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        status.print_table(cluster.config, fleet, Console())
    return 0
