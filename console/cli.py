"""The ``tidectl`` command line.

One parser; each command lives in its own module under ``tidectl.console.commands`` (or its
subsystem) with its arguments. ``tidectl agent ...`` is the node agent's own command line,
mounted here so an operator has one tool (``python3 -m tidectl.agents`` and the zipapp take
the same arguments). Bad input ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from tidectl.agents import AGENT_VERSION
from tidectl.agents import cli as agent_cli


def build_parser() -> argparse.ArgumentParser:
    from tidectl.console.commands import (
        audit,
        console,
        cost,
        demo,
        events,
        lifecycle,
        nodes,
        run,
        serve,
        slurm,
        status,
    )
    from tidectl.console.sim.cli import add_sim_commands

    parser = argparse.ArgumentParser(
        prog="tidectl",
        description="A control plane for hybrid AI clusters: see, burst and drain GPU capacity.",
    )
    parser.add_argument("--version", action="version", version="tidectl " + AGENT_VERSION)
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    agent = commands.add_parser(
        "agent",
        help="the node agent: stream, once, facts, zipapp",
        description="The node agent: GPU, InfiniBand, storage, network and host health.",
    )
    agent_cli.configure(agent)
    status.add_parser(commands)
    run.add_parser(commands)
    nodes.add_parser(commands)
    events.add_parser(commands)
    cost.add_parser(commands)
    lifecycle.add_parsers(commands)
    serve.add_parser(commands)
    slurm.add_parser(commands)
    audit.add_parser(commands)
    console.add_parser(commands)
    demo.add_parser(commands)
    add_sim_commands(commands)
    # Playbooks (tidectl.playbooks) sit above the console core, like the agent's command
    # line: mounted here so an operator has one tool, imported only when named.
    from tidectl.playbooks import cli as play

    play.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Everything after "--" is a remote command (tidectl run), never our options: split it
    # off before argparse, which would otherwise take a --json meant for us as the command.
    remote: list[str] | None = None
    if "--" in argv:
        cut = argv.index("--")
        argv, remote = argv[:cut], argv[cut + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)
    if remote is not None:
        if not hasattr(args, "cmd"):
            parser.error(f"'--' is only for 'tidectl run': {' '.join(remote)!r}")
        args.cmd = remote
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if args.command == "agent":
        return agent_cli.run(args)
    return _run_console_command(args)


def _run_console_command(args: argparse.Namespace) -> int:
    from tidectl.console.commands import (
        audit,
        console,
        cost,
        demo,
        events,
        lifecycle,
        nodes,
        run,
        serve,
        slurm,
        status,
    )
    from tidectl.console.config.loader import ConfigError
    from tidectl.console.demo import DemoError
    from tidectl.console.lifecycle.errors import StoreError
    from tidectl.console.sim.cli import run_sim_command

    handlers = {
        "status": status.main,
        "run": run.main,
        "sim": run_sim_command,
        "console": console.main,
        "demo": demo.main,
        "nodes": nodes.main,
        "events": events.main,
        "cost": cost.main,
        "serve": serve.main,
        "slurm": slurm.main,
        "audit": audit.main,
        "play": _play,
        **dict.fromkeys(lifecycle.COMMANDS, lifecycle.main),
    }
    try:
        return handlers[args.command](args)
    except (ConfigError, run.UsageError, DemoError, StoreError) as exc:
        sys.stderr.write(f"tidectl {args.command}: {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


def _play(args: argparse.Namespace) -> int:
    from tidectl.playbooks import cli as play

    return play.main(args)
