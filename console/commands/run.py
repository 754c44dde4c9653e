"""``tidectl run -c cluster.toml NODESET -- CMD``: one command on many nodes, grouped output."""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from typing import TYPE_CHECKING, TextIO

from ClusterShell.NodeSet import NodeSet, NodeSetParseError

from tidectl.console.config.loader import load_config
from tidectl.console.config.model import ClusterConfig, NodeSpec
from tidectl.console.model import LinkState

if TYPE_CHECKING:  # the transport pulls in asyncssh: imported when a command runs
    from tidectl.console.control.run_audit import RunAudit
    from tidectl.console.fanout import Group
    from tidectl.console.transport.link import CommandResult

_SETTLED = {
    LinkState.CONNECTED,
    LinkState.UNREACHABLE,
    LinkState.AUTH_FAILED,
    LinkState.HOST_KEY_MISMATCH,
}


class UsageError(ValueError):
    pass


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="run a command on nodes, output grouped by identical result",
        description="Run CMD on every node of NODESET over SSH and print the output grouped by "
        "identical result, like clush -b. Exit status: 0 when every node succeeded, else the "
        "highest exit status, or 255 when a node could not be reached.",
    )
    parser.add_argument("-c", "--config", required=True, help="cluster.toml")
    parser.add_argument("nodeset", help="nodes, e.g. 'gpu[001-064]' or 'all'")
    parser.add_argument("cmd", nargs="*", help="-- then the command and its arguments")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-command seconds")
    parser.add_argument("--json", action="store_true", help="print JSON")


def select_nodes(config: ClusterConfig, pattern: str) -> list[NodeSpec]:
    if pattern == "all":
        return list(config.nodes)
    try:
        wanted = list(NodeSet(pattern))
    except NodeSetParseError as exc:
        raise UsageError(f"{pattern!r} is not a node set: {exc}") from None
    known = {spec.name: spec for spec in config.nodes}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise UsageError(
            f"not in {config.path.name}: {NodeSet.fromlist(unknown)} "
            f"(known: {NodeSet.fromlist(list(known))})"
        )
    return [known[name] for name in wanted]


async def run_command(
    config: ClusterConfig, specs: list[NodeSpec], command: str, timeout_s: float
) -> list[CommandResult]:
    """Connect to every node (bounded fan-out), run ``command`` on all at once, disconnect."""
    from tidectl.console.fanout import run_on
    from tidectl.console.transport.link import NodeLink
    from tidectl.console.transport.ssh import SshConnector, raise_fd_limit

    raise_fd_limit(len(specs) + 256)
    connector = SshConnector(config.ssh)
    settled: dict[str, asyncio.Event] = {spec.name: asyncio.Event() for spec in specs}

    def on_state(name: str, state: LinkState, error: str | None) -> None:
        if state in _SETTLED:
            settled[name].set()

    links = [NodeLink(spec, connector, on_state=on_state) for spec in specs]
    tasks = [asyncio.create_task(link.run()) for link in links]
    try:
        waits = [asyncio.create_task(event.wait()) for event in settled.values()]
        limit = config.ssh.connect_timeout_s + config.ssh.login_timeout_s + 5
        _, pending = await asyncio.wait(waits, timeout=limit)
        for wait in pending:
            wait.cancel()
        return await run_on(links, command, timeout_s)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await connector.close()


def print_groups(groups: list[Group], out: TextIO) -> None:
    for item in groups:
        outcome = item.outcome
        if outcome.error is not None:
            out.write(f"{item.nodes}: unreachable: {outcome.error}\n")
            continue
        label = (
            item.nodes if outcome.exit_status == 0 else f"{item.nodes} (exit {outcome.exit_status})"
        )
        text = (outcome.stdout + outcome.stderr).rstrip("\n")
        if "\n" in text:
            out.write(f"---------------\n{label} ({item.count})\n---------------\n{text}\n")
        else:
            out.write(f"{label}: {text}\n")


def _record_outcome(audit: RunAudit, results: list[CommandResult]) -> None:
    from tidectl.console.audit import AuditUnavailable
    from tidectl.console.fanout import run_outcome

    outcome = run_outcome(results) if results else "failed: interrupted before any node answered"
    try:
        audit.end(outcome)
    except AuditUnavailable as error:
        sys.stderr.write(f"tidectl run: the outcome is not in the audit log: {error}\n")


def main(args: argparse.Namespace) -> int:
    command_words = list(args.cmd)
    if not command_words:
        raise UsageError("no command given: tidectl run -c cluster.toml NODESET -- CMD")
    command = command_words[0] if len(command_words) == 1 else shlex.join(command_words)
    config = load_config(args.config)
    specs = select_nodes(config, args.nodeset)
    from tidectl.console.control.caller import Caller, Frontend
    from tidectl.console.control.errors import Refused
    from tidectl.console.control.run_audit import RunAudit

    try:  # the operator role, and the decision in the audit log before any node is reached
        audit = RunAudit.begin(config, Caller.local(Frontend.CLI), args.nodeset, command)
    except Refused as refused:
        sys.stderr.write(f"tidectl run: {refused}\n")
        return 1
    results: list[CommandResult] = []
    try:
        results = asyncio.run(run_command(config, specs, command, args.timeout))
    finally:
        _record_outcome(audit, results)
    from tidectl.console.fanout import exit_status, group

    groups = group(results)
    if args.json:
        json.dump(
            {
                "command": command,
                "nodes": len(results),
                "exit_status": exit_status(results),
                "groups": [
                    {
                        "nodes": g.nodes,
                        "count": g.count,
                        "exit_status": g.outcome.exit_status,
                        "stdout": g.outcome.stdout,
                        "stderr": g.outcome.stderr,
                        "error": g.outcome.error,
                    }
                    for g in groups
                ],
            },
            sys.stdout,
            indent=2,
        )
        sys.stdout.write("\n")
    else:
        print_groups(groups, sys.stdout)
    return exit_status(results)
