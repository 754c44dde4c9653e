"""Faults injected into a running simulated cluster from a front end (the console's ``i``).

The same lines ``tidectl sim inject`` writes, appended to the cluster's fault file; the nodes
pick them up within their fault poll plus one tick. Writing is a small blocking file append:
the console calls it from a worker thread, never from a handler.
"""

from __future__ import annotations

from pathlib import Path

from tidectl.console.sim import files
from tidectl.console.sim.cli import SimCommandError, clear_lines, inject_lines
from tidectl.console.sim.files import SimLayout

__all__ = ["SimCommandError", "SimFaults"]


class SimFaults:
    """Inject and clear faults of the simulated cluster served from ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self._faults = SimLayout(out).faults

    def inject(self, node: str, fault: str) -> list[str]:
        """Inject ``fault`` (``"xid gpu=3 code=79"``) into ``node``; returns the lines written.

        Raises ``SimCommandError`` with a sentence when the fault or the node is not valid.
        """
        lines = inject_lines(self.out, node, fault.split())
        files.append_lines(self._faults, lines)
        return lines

    def clear(self, node: str) -> list[str]:
        """End every fault injected into ``node``; returns the lines written."""
        lines = clear_lines(self.out, [node])
        files.append_lines(self._faults, lines)
        return lines

    def clear_all(self) -> list[str]:
        """End every injected fault on every node; returns the line written."""
        lines = clear_lines(self.out, [])
        files.append_lines(self._faults, lines)
        return lines
