"""``tidectl sim serve|inject|clear``: run a simulated cluster and change its faults.

``add_sim_commands`` mounts the commands under the main ``tidectl`` parser;
``run_sim_command`` runs a parsed one. ``python -m tidectl.console.sim.cli serve ...`` runs
them without the main CLI.

``inject`` and ``clear`` append lines to the cluster's fault file (``DIR/faults.txt``),
which every simulated node watches (``docs/agent-sim.md``): a line takes effect on a node
within the node's 0.5 s fault poll plus one tick.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ClusterShell.NodeSet import RESOLVER_NOGROUP, NodeSet, NodeSetException
from ClusterShell.RangeSet import RangeSetException

from tidectl.agents.probes.simfaults import Clear, Fault, FaultError, parse_line
from tidectl.console.sim import files
from tidectl.console.sim.defaults import (
    DEFAULT_ADDRESS,
    DEFAULT_BASE_PORT,
    DEFAULT_USER,
    NODES_PER_WORKER,
)
from tidectl.console.sim.files import SimLayout

_FAULT_HELP = """\
fault lines (docs/agent-sim.md): xid gpu=N [code=C] | ecc_dbe gpu=N [count=C] |
ecc_sbe gpu=N [rate=R] | gpu_lost gpu=N | hot gpu=N [temp=T] |
ib_down port=HCA/P [phys=disabled|polling] | symbol_errors port=HCA/P [rate=R] |
disk_full mount=PATH [pct=P] | stale_mount mount=PATH"""


class SimCommandError(Exception):
    """A sim command cannot do what it was asked; the message says why."""


def add_sim_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sim`` with its ``serve``, ``inject`` and ``clear`` subcommands."""
    sim = subparsers.add_parser(
        "sim",
        help="a simulated cluster served over real SSH on 127.0.0.1",
        description="A simulated GPU cluster: N nodes, each behind its own SSH port and host "
        "key, each running the real agent over simulated hardware.",
    )
    commands = sim.add_subparsers(dest="sim_command", metavar="COMMAND")
    commands.required = True

    serve_cmd = commands.add_parser(
        "serve",
        help="serve N simulated nodes until SIGTERM or Ctrl-C",
        description="Serve N simulated nodes on consecutive ports of 127.0.0.1. Writes "
        "cluster.toml, known_hosts and a client key into DIR, then prints one ready line.",
    )
    serve_cmd.add_argument("--nodes", type=int, required=True, metavar="N")
    serve_cmd.add_argument(
        "--base-port",
        type=int,
        default=DEFAULT_BASE_PORT,
        metavar="P",
        help=f"port of the first node; node i gets P+i (default {DEFAULT_BASE_PORT}; "
        "0: pick a free run of ports)",
    )
    serve_cmd.add_argument(
        "--seed", type=int, default=0, metavar="S", help="node i (from 0) has seed S+i (0)"
    )
    serve_cmd.add_argument("--out", type=Path, required=True, metavar="DIR")
    serve_cmd.add_argument(
        "--user", default=DEFAULT_USER, help=f"the one login name nodes accept ({DEFAULT_USER})"
    )
    serve_cmd.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="S",
        help="[agent] interval_s written into cluster.toml (1.0)",
    )
    serve_cmd.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="W",
        help=f"processes sharing the nodes (0: one per {NODES_PER_WORKER} nodes, at most one "
        "per core)",
    )
    serve_cmd.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        metavar="R",
        help="random faults per node per hour, each ending by itself after 2 to 15 minutes "
        "(XIDs and double-bit ECC errors are one-off events); seeded by --seed (0: none)",
    )
    serve_cmd.add_argument("--address", default=DEFAULT_ADDRESS, help=argparse.SUPPRESS)

    inject = commands.add_parser(
        "inject",
        help="inject a fault into simulated nodes",
        description="Append a fault line for NODES to DIR/faults.txt.",
        epilog=_FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inject.add_argument("--out", type=Path, required=True, metavar="DIR")
    inject.add_argument("node", metavar="NODES", help="a node or node set, e.g. sim[0001-0004]")
    inject.add_argument("fault", nargs="+", metavar="FAULT", help="e.g. xid gpu=3 code=79")

    clear = commands.add_parser(
        "clear",
        help="end faults (all, or of some nodes)",
        description="Append a clear line to DIR/faults.txt: it ends the matching faults "
        "injected before it. Without NODES, on every node; filters kind=, gpu=, port=, "
        "mount= narrow it.",
    )
    clear.add_argument("--out", type=Path, required=True, metavar="DIR")
    clear.add_argument(
        "words", nargs="*", metavar="[NODES] [FILTER=VALUE ...]", help="e.g. sim0003 kind=xid"
    )


def run_sim_command(args: argparse.Namespace) -> int:
    """Run a parsed ``sim`` command; a problem is one line on stderr and exit status 2."""
    # The server (and asyncssh) only for serve: inject and clear are file appends.
    from tidectl.console.sim.server import SimServerError

    try:
        if args.sim_command == "serve":
            return _serve(args)
        if args.sim_command == "inject":
            lines = inject_lines(args.out, args.node, args.fault)
        else:
            lines = clear_lines(args.out, args.words)
        files.append_lines(SimLayout(args.out).faults, lines)
    except (SimServerError, SimCommandError, OSError) as exc:
        sys.stderr.write(f"tidectl sim {args.sim_command}: error: {exc}\n")
        return 2
    for line in lines:
        sys.stdout.write(f"{line}\n")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from tidectl.console.sim.server import SimOptions, serve

    if args.workers < 0:
        raise SimCommandError(f"--workers must be 0 (automatic) or more, got {args.workers}")
    options = SimOptions(
        out=args.out,
        nodes=args.nodes,
        base_port=args.base_port,
        seed=args.seed,
        user=args.user,
        interval_s=args.interval,
        address=args.address,
        fault_rate_per_hour=args.fault_rate,
    )

    def announce(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()  # scripts wait for this line: it must not sit in a buffer

    serve(options, announce, workers=args.workers or None)
    return 0


def _cluster(out: Path) -> SimLayout:
    layout = SimLayout(out)
    if not layout.nodes.is_dir():
        raise SimCommandError(
            f"{out} holds no simulated cluster (no {layout.nodes}); start one with "
            f"tidectl sim serve --out {out}"
        )
    return layout


def _nodes(out: Path, text: str) -> list[str]:
    """The node set ``text``, each node checked against the cluster in ``out``."""
    layout = _cluster(out)
    try:
        names = list(NodeSet(text, resolver=RESOLVER_NOGROUP))
    except (NodeSetException, RangeSetException) as exc:
        raise SimCommandError(f"{text!r} is not a node set: {exc}") from exc
    unknown = [name for name in names if not layout.node_root(name).is_dir()]
    if unknown:
        raise SimCommandError(
            f"no simulated node {files.fold(unknown)} in {out} (nodes are "
            f"{files.fold(p.name for p in layout.nodes.iterdir() if p.is_dir())})"
        )
    return names


def inject_lines(out: Path, nodes: str, fault_words: list[str]) -> list[str]:
    """The fault-file lines that inject ``fault_words`` into each of ``nodes``."""
    text = " ".join(fault_words)
    try:
        rule = parse_line(text)
    except FaultError as exc:
        raise SimCommandError(f"{text!r}: {exc}") from exc
    if rule is None:
        raise SimCommandError("no fault given; " + _FAULT_HELP.replace("\n", " "))
    if isinstance(rule, Clear):
        raise SimCommandError("to end faults, use tidectl sim clear")
    if rule.node is not None:
        raise SimCommandError("name the node as NODES, not as node= in the fault")
    assert isinstance(rule, Fault)
    return [f"{rule.canonical()} node={name}" for name in _nodes(out, nodes)]


def clear_lines(out: Path, words: list[str]) -> list[str]:
    """The clear lines for ``[NODES] [FILTER=VALUE ...]``: one per node, or one for all."""
    targets = [word for word in words if "=" not in word]
    filters = [word for word in words if "=" in word]
    if len(targets) > 1:
        raise SimCommandError(
            f"give at most one node set before the filters, got {' '.join(targets)}"
        )
    if any(word.startswith("node=") for word in filters):
        raise SimCommandError("name the nodes as NODES, not as node=")
    text = " ".join(["clear", *filters])
    try:
        rule = parse_line(text)
    except FaultError as exc:
        raise SimCommandError(f"{text!r}: {exc}") from exc
    assert isinstance(rule, Clear)
    if not targets:
        _cluster(out)
        return [rule.canonical()]
    return [f"{rule.canonical()} node={name}" for name in _nodes(out, targets[0])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tidectl")
    add_sim_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return run_sim_command(parser.parse_args(["sim", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
