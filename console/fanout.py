"""Running one command on many nodes over their open connections, ``clush -b`` style.

Results are grouped by identical outcome (stdout, stderr, exit status, error), and each
group's nodes folded into a node set, so 1,000 identical answers print as one line and the
odd node out stands out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ClusterShell.NodeSet import NodeSet

from tidectl.console.transport.link import CommandResult, NodeLink


@dataclass(frozen=True, slots=True)
class Outcome:
    exit_status: int | None
    stdout: str
    stderr: str
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_status == 0


@dataclass(frozen=True, slots=True)
class Group:
    nodes: str  # folded node set
    count: int
    outcome: Outcome


async def run_on(links: Iterable[NodeLink], command: str, timeout_s: float) -> list[CommandResult]:
    """Run ``command`` on every link at once (each already connected, or it says why not)."""
    return list(await asyncio.gather(*(link.run_command(command, timeout_s) for link in links)))


def group(results: Iterable[CommandResult]) -> list[Group]:
    """Identical outcomes together, failures first, then by node set."""
    by_outcome: dict[Outcome, list[str]] = {}
    for result in results:
        outcome = Outcome(result.exit_status, result.stdout, result.stderr, result.error)
        by_outcome.setdefault(outcome, []).append(result.node)
    groups = [
        Group(str(NodeSet.fromlist(names)), len(names), outcome)
        for outcome, names in by_outcome.items()
    ]
    return sorted(groups, key=lambda g: (g.outcome.ok, g.nodes))


def exit_status(results: Sequence[CommandResult]) -> int:
    """The run's status, as clush gives it: 255 when a node could not run it, else the
    highest node's (0 when every node succeeded)."""
    if any(r.exit_status is None for r in results):
        return 255
    return max((r.exit_status or 0 for r in results), default=0)


def run_outcome(results: Sequence[CommandResult]) -> str:
    """How a run that finished ended, for its audit record."""
    succeeded = sum(1 for r in results if r.exit_status == 0)
    return f"done: exit {exit_status(results)}, {succeeded} of {len(results)} node(s) succeeded"
