"""A console session's actions, written down as a playbook (``docs/playbooks.md``).

The console records each action the control plane carried out — bursts, drains, resumes,
terminates — in order, in the playbook schema's own terms, so that ``tidectl play FILE
--check`` plans them again. A burst is recorded as the size it brought its pool to (a
playbook ensures, it does not add: replaying it twice adds nothing the second time); node
names are kept as they were, so the playbook replays against the cluster it was recorded on.
Refused or failed actions are not recorded: they changed nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tidectl.console.nodesets import fold

__all__ = ["SessionRecording"]


@dataclass
class SessionRecording:
    """What this console did, oldest first; ``started``: when the session began (UTC)."""

    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    steps: list[dict[str, Any]] = field(default_factory=list)

    def burst(self, pool: str, ensure: int) -> None:
        self._add("burst", f"ensure {ensure} node(s) in {pool}", {"pool": pool, "ensure": ensure})

    def drain(self, nodes: Sequence[str], reason: str) -> None:
        names = _nodeset(nodes)
        self._add("drain", f"drain {names}", {"nodes": names, "reason": reason})

    def resume(self, nodes: Sequence[str]) -> None:
        names = _nodeset(nodes)
        self._add("resume", f"resume {names}", {"nodes": names})

    def terminate(self, nodes: Sequence[str], reason: str) -> None:
        names = _nodeset(nodes)
        self._add("terminate", f"terminate {names}", {"nodes": names, "reason": reason})

    def _add(self, kind: str, title: str, body: dict[str, Any]) -> None:
        self.steps.append({"name": title, kind: body})

    def playbook(self, cluster: Path, user: str) -> str:
        """The recording as playbook YAML text (a comment says where it came from)."""
        stamp = self.started.strftime("%Y%m%d-%H%M%S")
        document = {
            "name": f"console-session-{stamp}",
            "description": f"what {user} did in the tidectl console from "
            f"{self.started:%Y-%m-%d %H:%M} UTC",
            "cluster": str(cluster),
            "steps": self.steps,
        }
        body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
        head = (
            "# Recorded by the tidectl console. Replay it with: tidectl play FILE --check\n"
            "# Node names are this cluster's; bursts are recorded as the pool size they reached.\n"
        )
        return head + body

    def save(self, folder: Path, cluster: Path, user: str) -> Path:
        """Write the playbook into ``folder`` under a new name; returns its path."""
        path = folder / f"tidectl-session-{self.started:%Y%m%d-%H%M%S}.yaml"
        counter = 1
        while path.exists():
            counter += 1
            path = folder / f"tidectl-session-{self.started:%Y%m%d-%H%M%S}-{counter}.yaml"
        path.write_text(self.playbook(cluster, user), encoding="utf-8")
        return path


def _nodeset(nodes: Sequence[str]) -> str:
    return fold(nodes)
