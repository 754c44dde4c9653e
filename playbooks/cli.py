"""``tidectl play PLAYBOOK.yaml [--check] [--var k=v] [--json]``: run a playbook, or plan it.

The playbook is read and validated whole before anything runs: an invalid one ends with
``FILE:LINE: sentence`` and exit status 2. The cluster is the one ``-c`` names, else the
playbook's ``cluster:``; ``--demo`` runs it on a fresh simulated cluster in this process
instead (the demo's: ``tidectl demo``). It attaches to ``tidectl serve`` when ``--server`` or
``[server] socket`` names one that answers, and otherwise runs the control plane in this
process for as long as the playbook runs.

Exit status: 0 every step done (``--check``: the plan has no step that would fail); 1 a step
failed (its ``on_failure`` steps ran) or would fail; 2 an invalid playbook, command line or
config.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "main"]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "play",
        help="run a YAML playbook (or, with --check, print its plan)",
        description="Run the steps of a YAML playbook through the control plane: burst, wait, "
        "run, drain, resume, terminate, check, notify (docs/playbooks.md). With --check, print "
        "what it would change, node by node and with what it would cost, and change nothing. "
        "Exit status: 0 done; 1 a step failed (on_failure ran) or would fail; 2 an invalid "
        "playbook, command line or config.",
    )
    parser.add_argument("playbook", type=Path, metavar="PLAYBOOK.yaml")
    parser.add_argument(
        "-c", "--config", type=Path, help="cluster.toml (default: the playbook's cluster:)"
    )
    parser.add_argument("--check", action="store_true", help="print the plan; change nothing")
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a variable the playbook declares under vars: (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--store", type=Path, metavar="PATH", help="the store file")
    parser.add_argument(
        "--server",
        type=Path,
        metavar="SOCKET",
        help="act through a running tidectl serve at SOCKET (default: [server] socket)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="run it on a simulated cluster started for the purpose (tidectl demo's)",
    )


def main(args: argparse.Namespace) -> int:
    from tidectl.console.config.loader import ConfigError, load_config
    from tidectl.playbooks.errors import PlaybookError
    from tidectl.playbooks.schema import check_against, load
    from tidectl.playbooks.templates import parse_assignment

    try:
        variables = dict(parse_assignment(text) for text in args.var)
        playbook = load(args.playbook, variables)
    except PlaybookError as error:
        return _invalid(args, str(error))
    if args.demo and (args.config or args.server):
        return _invalid(args, "--demo runs its own cluster; leave out -c and --server")
    if args.demo:
        return _on_demo(args, playbook)
    where = args.config or playbook.cluster
    if where is None:
        return _invalid(
            args,
            f"{args.playbook} names no cluster: pass -c cluster.toml, add cluster: to the "
            "playbook, or try it on a simulated cluster with --demo",
        )
    try:
        config = load_config(where)
        check_against(playbook, config)
    except (ConfigError, PlaybookError) as error:
        return _invalid(args, str(error))
    return asyncio.run(_play(args, playbook, config))


def _on_demo(args: argparse.Namespace, playbook: Any) -> int:
    from tidectl.console.demo import DEMO_WORKLOAD, DemoCluster
    from tidectl.playbooks.errors import PlaybookError
    from tidectl.playbooks.schema import check_against

    with DemoCluster(DEMO_NODES) as cluster:
        try:
            check_against(playbook, cluster.config)
        except PlaybookError as error:
            return _invalid(args, str(error))
        options = {"in_process_sim": True, "workload": DEMO_WORKLOAD}
        return asyncio.run(_play(args, playbook, cluster.config, **options))


#: Nodes of the simulated cluster ``--demo`` starts.
DEMO_NODES = 8


async def _play(args: argparse.Namespace, playbook: Any, config: Any, **options: Any) -> int:
    from tidectl.playbooks.errors import PlaybookError
    from tidectl.playbooks.opening import open_cluster
    from tidectl.playbooks.progress import reporter_for

    reporter = reporter_for(sys.stdout, quiet=args.json or args.check)
    try:
        async with open_cluster(
            config,
            server=args.server,
            store=args.store,
            playbook=playbook,
            reporter=reporter,
            check=args.check,
            note=reporter_for(sys.stderr),
            **options,
        ) as session:
            report = await session.play(playbook, check=args.check)
    except PlaybookError as error:
        if args.json:
            _print_json({"ok": False, "error": str(error)})
        else:
            sys.stderr.write(f"tidectl play: {error}\n")
        return 1
    if args.json:
        _print_json(report.as_json())
    elif args.check:
        sys.stdout.write(report.text())
    else:
        sys.stdout.write(report.summary() + "\n")
    return 0 if report.ok else 1


def _invalid(args: argparse.Namespace, sentence: str) -> int:
    if args.json:
        _print_json({"ok": False, "error": sentence})
    sys.stderr.write(f"tidectl play: {sentence}\n")
    return 2


def _print_json(value: dict[str, Any]) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")
