"""The ``tidectl`` command line.

One parser; each subsystem adds its own subcommands. ``tidectl agent ...`` is the node agent's
own command line, mounted here so an operator has one tool (``python3 -m tidectl.agents`` and
the zipapp take the same arguments).
"""

from __future__ import annotations

import argparse

from tidectl.agents import AGENT_VERSION
from tidectl.agents import cli as agent_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidectl",
        description="A control plane for hybrid AI clusters: see, burst and drain GPU capacity.",
    )
    parser.add_argument("--version", action="version", version="tidectl " + AGENT_VERSION)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    agent = commands.add_parser(
        "agent",
        help="the node agent: stream, once, facts, zipapp",
        description="The node agent: GPU, InfiniBand, storage, network and host health.",
    )
    agent_cli.configure(agent)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "agent":
        return agent_cli.run(args)
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse requires one
