"""``tidectl console -c cluster.toml``: the full-screen console on a real cluster.

The Textual app (``tidectl.console.tui``) is imported only once the config is loaded and a
terminal is there to draw on: bad input is reported without paying for Textual's import, and
this module stays importable by the headless core.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tidectl.console.commands.run import UsageError
from tidectl.console.config.loader import load_config


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "console",
        help="the full-screen console on a cluster",
        description="Connect to every node of cluster.toml and show the whole fleet live in a "
        "full-screen terminal console (? in it lists every key). For a one-off report "
        "without a screen, use tidectl status.",
    )
    parser.add_argument("-c", "--config", required=True, help="cluster.toml")
    parser.add_argument(
        "--server",
        metavar="SOCKET",
        type=Path,
        help="attach to the tidectl serve listening on this Unix socket (default: [server] "
        "socket in cluster.toml, if set); without one, the console runs the control plane",
    )


def require_terminal(without: str) -> None:
    """Raise ``UsageError`` unless stdin and stdout are a terminal; ``without``: the way out."""
    for name, stream in (("stdout", sys.stdout), ("stdin", sys.stdin)):
        if stream is None or not stream.isatty():
            raise UsageError(f"the console needs a terminal, and {name} is not one; {without}")


def main(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    require_terminal("use tidectl status -c FILE for a report without a screen")
    from tidectl.console.tui.app import run_console

    return run_console(config, server=args.server)
