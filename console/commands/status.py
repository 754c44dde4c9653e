"""``tidectl status -c cluster.toml``: connect, collect a few seconds, print the fleet.

Exit status 0 when every node is healthy, 1 when any is not (warn, critical, unknown or not
reachable), 2 for bad input: a script can gate on it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tidectl.console.config.loader import load_config
from tidectl.console.config.model import ClusterConfig
from tidectl.console.fleet import Fleet, NodeState
from tidectl.console.model import LinkState, Severity
from tidectl.console.nodesets import expand, group

#: Link states after which waiting longer will not bring a sample this run.
_GAVE_UP = {
    LinkState.UNREACHABLE,
    LinkState.AUTH_FAILED,
    LinkState.HOST_KEY_MISMATCH,
    LinkState.AGENT_FAILED,
}
_STYLE = {
    Severity.OK: "green",
    Severity.UNKNOWN: "yellow",
    Severity.WARN: "yellow",
    Severity.CRITICAL: "bold red",
}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "status",
        help="connect to every node, collect, print fleet health",
        description="Connect to every node of cluster.toml, deploy and run the agent, collect "
        "for up to --wait seconds, and print each node's link, health and findings. Exit "
        "status 0 when every node is healthy, 1 otherwise.",
    )
    parser.add_argument("-c", "--config", required=True, help="cluster.toml")
    parser.add_argument("--wait", type=float, default=10.0, metavar="S", help="seconds (10)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _settled(node: NodeState) -> bool:
    # Two samples: rate-based rules (errors per minute) need a pair of readings.
    if node.sample is not None and node.sample.seq >= 2:
        return True
    return node.link in _GAVE_UP


async def collect(config: ClusterConfig, wait_s: float, *, until_settled: bool = True) -> Fleet:
    """Collect for ``wait_s`` seconds, or less once every node has settled (``until_settled``)."""
    from tidectl.console.collectors import make_collector  # asyncssh: only once there is work

    fleet = Fleet(config.nodes, config.health)
    async with make_collector(config, fleet):
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
            if until_settled and all(_settled(node) for node in fleet.nodes.values()):
                break
        fleet.check_staleness()
        fleet.flush()
    return fleet


def node_json(node: NodeState, now: float) -> dict[str, Any]:
    gpus = node.sample.probes.gpu.gpus if node.sample and node.sample.probes.gpu else []
    return {
        "name": node.spec.name,
        "site": node.spec.site,
        "address": f"{node.spec.address}:{node.spec.port}",
        "link": node.link.value,
        "link_error": node.link_error,
        "health": node.health.word,
        "findings": [
            {
                "code": f.code,
                "severity": f.severity.word,
                "message": f.message,
                "subject": f.subject,
            }
            for f in node.findings
        ],
        "gpus": len(gpus),
        "agent": node.hello.agent if node.hello else None,
        "last_sample_age_s": round(now - node.sample_at, 3) if node.sample is not None else None,
    }


def fleet_json(config: ClusterConfig, fleet: Fleet, now: float) -> dict[str, Any]:
    """What ``--json`` prints: the cluster, whether all is healthy, and each node."""
    return {
        "cluster": config.name,
        "healthy": is_healthy(fleet),
        "nodes": [node_json(node, now) for node in fleet.nodes.values()],
    }


def is_healthy(fleet: Fleet) -> bool:
    return all(node.health is Severity.OK for node in fleet.nodes.values())


def print_table(config: ClusterConfig, fleet: Fleet, console: Console) -> None:
    keyed = {
        name: (
            node.health,
            node.link,
            " ".join(sorted({f.code for f in node.findings})),
            node.link_error or "",
        )
        for name, node in fleet.nodes.items()
    }
    table = Table(title=f"{config.name}: {len(keyed)} nodes", title_justify="left")
    for column in ("nodes", "#", "link", "health", "findings"):
        table.add_column(column, overflow="fold")
    rows = group(keyed)
    rows.sort(key=lambda row: (-row[1][0], row[0]))
    for nodes, (health, link, codes, link_error) in rows:
        detail = codes
        if link_error and link is not LinkState.STREAMING:
            detail = f"{codes} {link_error}".strip()
        count = len(expand(nodes))
        table.add_row(
            nodes,
            str(count),
            link.value,
            Text(health.word, style=_STYLE[health]),
            detail,
        )
    console.print(table)
    for name, node in sorted(fleet.nodes.items()):
        for finding in node.findings:
            if finding.severity >= Severity.WARN:
                line = f"{name}: [{finding.severity.word}] {finding.code}: {finding.message}"
                console.print(line, markup=False, highlight=False)


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    fleet = asyncio.run(collect(config, args.wait))
    if args.json:
        json.dump(fleet_json(config, fleet, time.monotonic()), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(config, fleet, Console())
    return 0 if is_healthy(fleet) else 1
