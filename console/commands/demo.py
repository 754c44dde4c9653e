"""``tidectl demo``: a simulated cluster, and the console on it (or, headless, its status).

Either way the demo runs the cluster's control plane (the sim scheduler with the demo's jobs,
the sim cloud pool, the reconcile loop); headless, its status gains the cloud nodes by
lifecycle state and the burn rate. Exit status 0 when the demo ran, whatever the health of its
nodes (faults are part of the demo); 2 with one line on stderr when it could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from tidectl.console.commands import status
from tidectl.console.commands.console import require_terminal
from tidectl.console.commands.run import UsageError
from tidectl.console.config.model import ClusterConfig
from tidectl.console.demo import (
    DEFAULT_FAULT_RATE_PER_HOUR,
    DEFAULT_NODES,
    DEMO_WORKLOAD,
    DemoCluster,
    DemoError,
)
from tidectl.console.fleet import Fleet
from tidectl.console.lifecycle.states import NodeKind, State

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

        return run_console(cluster.config, faults=cluster.faults, workload=DEMO_WORKLOAD)


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


@dataclass(frozen=True, slots=True)
class _Watched:
    """What a headless demo saw: the fleet, and the control plane's cloud nodes at the end."""

    fleet: Fleet
    cloud: dict[str, int]  # cloud nodes by lifecycle state, terminated ones left out
    burn_rate: float


async def _watch(config: ClusterConfig, seconds: float) -> _Watched:
    """Run the demo's control plane for ``seconds`` (all of them: the demo does not stop once
    every node has reported, as status does), then read the fleet and the cloud nodes."""
    from tidectl.console.control.assemble import AssemblyError, assemble

    fleet = Fleet(config.nodes, config.health)
    try:
        plane = await assemble(
            config,
            fleet=fleet,
            in_process_sim=True,
            workload=DEMO_WORKLOAD,
            who="tidectl demo",
            policies=True,
        )
    except AssemblyError as error:
        raise DemoError(f"the demo's control plane cannot start: {error}") from None
    async with plane:
        await asyncio.sleep(seconds)
        fleet.check_staleness()
        fleet.flush()
        cloud = Counter(
            record.state.value
            for record in plane.nodes()
            if record.kind is NodeKind.CLOUD and record.state is not State.TERMINATED
        )
        return _Watched(fleet, dict(sorted(cloud.items())), plane.burn_rate())


def _headless(cluster: DemoCluster, args: argparse.Namespace, seconds: float) -> int:
    watched = asyncio.run(_watch(cluster.config, seconds))
    cluster.check()
    if args.json:
        report: dict[str, Any] = status.fleet_json(cluster.config, watched.fleet, time.monotonic())
        report.update(
            cloud_nodes=watched.cloud,
            burn_rate_per_hour=round(watched.burn_rate, 4),
            seconds=seconds,
            seed=args.seed,
            fault_rate_per_hour=args.fault_rate,
            out=str(cluster.out) if args.out is not None else None,
        )
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        console = Console()
        status.print_table(cluster.config, watched.fleet, console)
        states = ", ".join(f"{n} {state}" for state, n in watched.cloud.items()) or "none"
        console.print(f"cloud nodes: {states} · burn ${watched.burn_rate:,.2f}/h")
    return 0
