"""Small value types shared by the whole control plane: severities, findings, link states."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.IntEnum):
    """Health of a node or a finding; ordered so that ``max()`` is the worst."""

    OK = 0
    UNKNOWN = 1  # we cannot tell: no sample yet, agent stale, node unreachable
    WARN = 2
    CRITICAL = 3

    @property
    def word(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong with a node: a stable code for machines and a sentence for people."""

    code: str  # e.g. "gpu.xid", "ib.port_down": stable, documented in docs/health.md
    severity: Severity
    message: str  # a sentence an operator can act on
    subject: str | None = None  # what on the node: "gpu3", "mlx5_0/1", "/scratch", "eth0"


class LinkState(enum.StrEnum):
    """Where the console's connection to one node's agent stands."""

    CONNECTING = "connecting"
    CONNECTED = "connected"  # logged in, no agent stream wanted (fan-out commands only)
    DEPLOYING = "deploying"
    STREAMING = "streaming"
    STALE = "stale"  # connected, but no sample for several intervals
    UNREACHABLE = "unreachable"  # refused, timed out, lost: retried with backoff
    AUTH_FAILED = "auth-failed"  # our key was refused: retried slowly, needs an operator
    HOST_KEY_MISMATCH = "host-key-mismatch"  # never sends a command; needs an operator
    AGENT_FAILED = "agent-failed"  # connected, but the agent could not run or spoke garbage
    STOPPED = "stopped"
